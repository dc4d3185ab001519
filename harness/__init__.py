"""What the tests and the benchmarks share, so that bench/ never imports tests/ and no test module imports another.

* ``broker``        Kafka brokers: Apache Kafka 4.x (local KRaft or testcontainers), Tansu as the last resort
* ``alertmanager``  a real Alertmanager (``service``, built from the Go module proxy) and an HTTP receiver
* ``prometheus_tools``, ``go_tools``  promtool, and the build-and-cache routine of both Go tools
* ``console``       one headless Chromium (Selenium) and a console served in a thread, for the browser tests
* ``required``      skip where a real service is missing, fail where the environment says it must be there
* ``streaming``     the data directory, per-test settings, workers in this process, topics read back, /metrics
* ``commands``      the ``adaptlog`` command as a subprocess: run, or started in the background and stopped
* ``inference``     a TransLog base trained on HDFS in a registry, adapters published on it, windows as the stream
                    publishes them, an inference worker on the session broker
* ``shippers``      records as log shippers write them (Fluent Bit, Vector, OTel Collector, zap, pino)
* ``exporters``     the metric names each process really exports

Not shipped: the wheel is ``stream`` and ``trainer`` only (pyproject's ``packages.find``), and the image copies
neither (.dockerignore). It imports ``stream`` and ``trainer``, never ``tests`` or ``bench``.
"""

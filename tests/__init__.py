"""The tests, by kind (markers select what runs; the directories say what a test needs):

* ``unit/``      no external service: real code on real data and small real models (some marked ``slow`` or ``gpu``)
* ``property/``  modules of hypothesis properties (window invariants, time parsing); a module that has a property or
                 two beside its example tests stays with them in ``unit/``
* ``broker/``    tests on a real Kafka broker (marker ``broker``); a module that mixes kinds goes by its heaviest need
* ``browser/``   the console in a real headless Chromium (marker ``browser``, also ``broker``)

Shared fixtures are in ``conftest.py`` (services and data); what tests and benchmarks share is in ``harness/``; small
data files in ``data/``.
"""

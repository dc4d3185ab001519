"""The three model families (TransLog, LogTransfer, LogLLM) behind one ``Detector`` interface, their artifacts and
the registry of versions.

No stream-runtime imports (aiokafka, drain3) here: the model is shared by training and serving. Nothing in it reaches
the network: see ``offline``.
"""

from stream.model.offline import keep_offline

keep_offline()

"""TransLog-style model: template embeddings, window features, transformer encoder with per-target adapters.

No stream-runtime imports (faust, aiokafka, drain3) here: the model is shared by training and serving.
"""

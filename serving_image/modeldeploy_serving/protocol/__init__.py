"""Wire formats: Open Inference Protocol v2 and the v1 `instances` protocol.

Bytes in, numpy arrays out, and back. Knows nothing of scikit-learn (only a ModelSignature) and
nothing of the HTTP framework (only bodies and error classes).
"""

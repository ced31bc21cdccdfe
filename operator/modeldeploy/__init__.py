"""modeldeploy: a Kubernetes operator for scikit-learn models (pure core, thin kopf shell)."""

__version__ = "0.1.0"

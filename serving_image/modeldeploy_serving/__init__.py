"""The model server and its monitoring sidecar, as run inside every ModelDeployment pod."""

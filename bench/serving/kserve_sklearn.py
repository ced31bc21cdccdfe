"""KServe's scikit-learn server, as the pipeline benchmark runs it (in KServe's own venv).

KServe publishes `kserve` on the package index but its `sklearnserver` only inside its container
image, so this is the same server rebuilt on the published `kserve`: a `kserve.Model` that loads
the one model file of `--model_dir` with joblib and predicts through KServe's own request and
response helpers (`get_predict_input`, `get_predict_response`), started by `kserve.ModelServer`
with the image's arguments (`--model_name`, `--model_dir`, `--http_port`, KServe's server flags).
It imports nothing from this project.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import joblib
import kserve
from kserve import logging, model_server
from kserve.utils.utils import get_predict_input, get_predict_response

EXTENSIONS = (".joblib", ".pkl", ".pickle")


class SKLearnModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.ready = False

    def load(self) -> bool:
        files = [p for p in self.model_dir.iterdir() if p.is_file() and p.suffix in EXTENSIONS]
        if len(files) != 1:
            raise RuntimeError(f"expected one model file in {self.model_dir}, found {files}")
        self._model = joblib.load(files[0])
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        instances = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict(instances), self.name)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    if args.configure_logging:
        logging.configure_logging(args.log_config_file)
    model = SKLearnModel(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()

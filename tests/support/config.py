"""The shipped configs/serve.yaml, for tests that start the service as users do."""

from __future__ import annotations

from pathlib import Path

from devtools.procs import free_port


def config_on_free_port(folder: Path) -> tuple[Path, int]:
    """The shipped configs/serve.yaml, unchanged but for its HTTP port (a free one), written into `folder`."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "configs/serve.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    path = Path(folder) / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, port

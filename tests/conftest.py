"""Fixtures shared by test folders."""

import importlib.util
import os
import pathlib
import sys

import matplotlib.pyplot as plt
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp


@pytest.fixture
def load_script():
    """Load a module of scripts/ (not a package) by name; it stands in sys.modules, where dataclasses look
    their module up."""
    def load(name: str):
        path = pathlib.Path(__file__).parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def spawn_on_gloo(tmp_path, monkeypatch):
    """`spawn(worker, world)` runs `worker(rank, init_file, skip_file)` in `world` processes that set up a gloo
    group through `init_file`; a worker that cannot writes why to `skip_file.<rank>`, and the test is skipped."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    if "GLOO_SOCKET_IFNAME" not in os.environ:  # loopback: the test needs no network
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")

    def spawn(worker, world: int) -> None:
        mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path / "skip")), nprocs=world, join=True)
        reasons = [p.read_text() for p in sorted(tmp_path.glob("skip.*"))]
        if reasons:
            pytest.skip(f"gloo process group could not be initialised: {reasons[0]}")

    return spawn


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures our plotting code saves and closes, in order, kept open to be read back; closed after the test."""
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)
    yield figures
    for figure in figures:
        close(figure)

"""weightsym.allocator: glibc thresholds raised once per process, respected opt-outs, and what benchmarks record."""

import platform
import subprocess
import sys

import pytest

CODE = "import json, weightsym.allocator as a; r = a.tune(); print(json.dumps([r, a.describe()]))"


def _run(env_extra):
    import json
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "WEIGHTSYM_ALLOCATOR"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc", reason="glibc only")
def test_tune_sets_both_thresholds_and_describe_says_so():
    applied, described = _run({})
    assert applied == {"M_MMAP_THRESHOLD": 1 << 30, "M_TRIM_THRESHOLD": 1 << 30}
    assert "mallopt M_MMAP_THRESHOLD=1073741824" in described


def test_opt_out_and_user_settings_are_respected():
    applied, described = _run({"WEIGHTSYM_ALLOCATOR": "default"})
    assert applied is None and described == "glibc defaults"
    applied, described = _run({"MALLOC_MMAP_THRESHOLD_": "65536"})
    assert applied is None and described == "MALLOC_MMAP_THRESHOLD_=65536"


def test_cli_tunes_the_allocator_before_running_a_command(capsys):
    from weightsym import allocator
    from weightsym.cli import main

    assert main(["describe", "--model", "mnist1d-mlp"]) == 0
    capsys.readouterr()
    import os

    opted_out = os.environ.get("WEIGHTSYM_ALLOCATOR") or any(k.startswith("MALLOC_") for k in os.environ)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and not opted_out:
        assert allocator.settings()["tuned"] == {"M_MMAP_THRESHOLD": 1 << 30, "M_TRIM_THRESHOLD": 1 << 30}

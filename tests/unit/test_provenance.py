"""Fingerprints of inputs: what counts as a change."""

from k2d.provenance import fingerprint


def test_a_model_directory_is_its_own_files_not_what_is_written_beside_them(tmp_path):
    model = tmp_path / "teacher"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    before = fingerprint(model)
    (model / "decode_test_in").mkdir()  # stage 6 decodes the teacher of exp/NAME/teacher into it
    (model / "decode_test_in" / "hyp.txt").write_text("utt1 text\n")
    assert fingerprint(model) == before
    (model / "model.safetensors").write_bytes(b"other weights")
    assert fingerprint(model) != before


def test_any_other_directory_is_all_of_its_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("a")
    before = fingerprint(tmp_path)
    (tmp_path / "sub" / "a.txt").write_text("b")
    assert fingerprint(tmp_path) != before


def test_made_by_names_this_commit_the_versions_and_the_machine():
    import os
    import subprocess
    from pathlib import Path

    from k2d.provenance import made_by

    line = made_by()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()
    assert line.startswith(f"Made by k2d commit {head}")
    assert "torch " in line and "transformers " in line and f"{os.cpu_count()} CPU cores" in line
    # whether the CPU has bfloat16 arithmetic changes the numbers (autocast runs only there): the kernel's own
    # flags decide, independently of torch's check
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set(cpuinfo.read_text().split())
        if {"avx512_bf16", "amx_bf16"} & flags:
            assert line.endswith("CPU cores (native bfloat16).")
        elif "avx512f" not in flags:
            assert line.endswith("CPU cores (no native bfloat16).")

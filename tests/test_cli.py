import re

from fci.__main__ import main


def test_single_configuration_command(tmp_path, capsys):
    args = ["--clauses", "3", "--hidden", "4", "--alpha", "2", "--trials", "2", "--warmup", "2", "--finetune", "2",
            "--train-samples", "128", "--test-samples", "64", "--device", "cpu", "--data", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): m for m in re.finditer(r"^(dense|clause α=2|random α=2)\s+([\d.]+) ± ([\d.]+)\s+(\d+)$", out, re.M)}
    assert set(rows) == {"dense", "clause α=2", "random α=2"}
    assert len({r.group(4) for r in rows.values()}) == 1  # one nnz for every condition
    assert len(list((tmp_path / "store").iterdir())) == 6
    table = out.split("interference and static decoding")[1]
    for name in ("dense", "clause α=2", "random α=2"):
        (line,) = [l for l in table.splitlines() if l.startswith(name)]
        values = [float(v) for v in re.findall(r"(-?[\d.]+|nan) ±", line)]
        assert len(values) == 4
        cap, cos, f1, agree = values
        assert 0 < cap <= 1 and 0 <= cos <= 1 and 0 <= f1 <= 1 and 0 <= agree <= 1


def test_bad_options_fail_with_a_message(tmp_path, capsys):
    assert main(["--trials", "0", "--data", str(tmp_path)]) == 2
    assert "--trials" in capsys.readouterr().err
    assert main(["--splits", "clause,banana", "--data", str(tmp_path)]) == 2
    assert "--splits" in capsys.readouterr().err
    assert main(["--clause-size", "0", "--data", str(tmp_path)]) == 2
    assert "clause_size" in capsys.readouterr().err

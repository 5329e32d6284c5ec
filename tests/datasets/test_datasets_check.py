"""The data-root checker: python -m clipbayes.datasets.check --root DATA [--dataset NAME ...]."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (see README 'Set-up'); the dataset readers need it")

from tests.datasets.miniature import REPO_ROOT, build_all, build_miniature, corrupt_image

from clipbayes.datasets.check import main


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "data"
    build_all(folder, ["OxfordPets", "FGVCAircraft", "ImageNet", "ImageNetA"])
    return str(folder)


def _run(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr().out


def _line(out, name):
    return next(line for line in out.splitlines() if f"] {name} (" in line)


def test_all_present(root, capsys):
    code, out = _run(capsys, "--root", root, "--dataset", "OxfordPets", "fgvc_aircraft", "imagenet", "imagenet_a.yaml",
                     "--verify", "-1")
    assert code == 0
    for name in ("OxfordPets", "FGVCAircraft", "ImageNet", "ImageNetA"):
        assert _line(out, name).startswith("[OK")
    assert "5 classes; train / val / test 20 / 10 / 10; 40 images decoded" in _line(out, "OxfordPets")
    assert "train 50 / test (also val) 20" in _line(out, "ImageNet")


def test_survey_without_dataset_lists_absent_ones_without_failing(root, capsys):
    code, out = _run(capsys, "--root", root)
    assert code == 0
    assert _line(out, "DescribableTextures").startswith("[ABSENT")
    assert _line(out, "OxfordPets").startswith("[OK")


def test_requested_but_absent_fails(root, capsys):
    code, out = _run(capsys, "--root", root, "--dataset", "DescribableTextures")
    assert code == 1
    assert _line(out, "DescribableTextures").startswith("[ABSENT")
    assert os.path.join(root, "dtd") in out


def test_missing_split_file(root, capsys):
    os.remove(os.path.join(root, "oxford_pets", "split_zhou_OxfordPets.json"))
    code, out = _run(capsys, "--root", root, "--dataset", "OxfordPets")
    assert code == 1
    assert _line(out, "OxfordPets").startswith("[MISSING")
    assert os.path.join(root, "oxford_pets", "split_zhou_OxfordPets.json") in out
    assert "drive.google.com" in out and "DATASET.AUTO_SPLIT" in out


def test_missing_annotation_file(root, capsys):
    os.remove(os.path.join(root, "fgvc_aircraft", "images_variant_test.txt"))
    code, out = _run(capsys, "--root", root, "--dataset", "FGVCAircraft")
    assert code == 1 and _line(out, "FGVCAircraft").startswith("[MISSING")
    assert "images_variant_test.txt" in out and "fgvc-aircraft-2013b.tar.gz" in out


def test_corrupt_image_and_missing_image(root, capsys):
    info = build_miniature(os.path.join(root, "..", "other"), "OxfordPets")  # same names, to pick paths
    rel_bad = os.path.relpath(info.splits["val"][0][0], info.root)
    rel_gone = os.path.relpath(info.splits["test"][0][0], info.root)
    corrupt_image(os.path.join(root, rel_bad))
    os.remove(os.path.join(root, rel_gone))
    code, out = _run(capsys, "--root", root, "--dataset", "OxfordPets", "--verify", "-1")
    assert code == 1 and _line(out, "OxfordPets").startswith("[CORRUPT")
    assert "1 of 40 images listed in" in out and os.path.join(root, rel_gone) in out
    assert "1 of 39 decoded images are unreadable" in out and os.path.join(root, rel_bad) in out


def test_unreadable_split_and_inconsistent_labels(root, capsys):
    split = os.path.join(root, "oxford_pets", "split_zhou_OxfordPets.json")
    with open(split) as handle:
        content = json.load(handle)
    content["test"][0][2] = "a different name"
    with open(split, "w") as handle:
        json.dump(content, handle)
    code, out = _run(capsys, "--root", root, "--dataset", "OxfordPets")
    assert code == 1 and "has several class names" in out
    with open(split, "w") as handle:
        handle.write("{")
    code, out = _run(capsys, "--root", root, "--dataset", "OxfordPets")
    assert code == 1 and _line(out, "OxfordPets").startswith("[CORRUPT") and "not valid JSON" in out


def test_verify_zero_decodes_nothing(root, capsys):
    corrupt_image(os.path.join(root, "imagenet-adversarial", "imagenet-a", "n01498041",
                               "0.000116_stingray _ stingray_0.860.jpg"))
    code, out = _run(capsys, "--root", root, "--dataset", "ImageNetA", "--verify", "0")
    assert code == 0 and "0 images decoded" in out
    code, out = _run(capsys, "--root", root, "--dataset", "ImageNetA", "--verify", "-1")
    assert code == 1 and "stingray_0.860.jpg" in out


def test_command_line_entry_point(root):
    os.remove(os.path.join(root, "imagenet", "classnames.txt"))
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "clipbayes.datasets.check", "--root", root, "--dataset", "ImageNet",
                           "OxfordPets"], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "[MISSING] ImageNet" in done.stdout and "classnames.txt" in done.stdout
    assert "[OK     ] OxfordPets" in done.stdout

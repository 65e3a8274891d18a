"""The command line as a whole: fast help, help text for every option, quiet stderr."""

import os
import subprocess
import sys

import pytest

from medivision_tf.cli import _quiet, build_parser

COMMANDS = ("datasets", "demo", "evaluate", "explain", "export", "predict", "prepare",
            "reproduce", "scan", "serve", "train")


def test_help_imports_no_tensorflow():
    # `medivision --help` is fast because no command module imports TensorFlow
    # (or Keras) to register its flags.
    code = (
        "import sys\n"
        "from medivision_tf.cli import main\n"
        f"for command in {COMMANDS!r}:\n"
        "    try:\n"
        "        main([command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_every_option_has_help_with_its_default_and_choices():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    assert set(COMMANDS) <= set(subparsers)
    for name, sub in subparsers.items():
        for action in sub._actions:
            if not action.option_strings or action.dest == "help" or action.required:
                continue  # a required option has no default to show
            assert action.help, f"medivision {name} {action.option_strings[0]} has no help"
            assert "default" in action.help, (
                f"medivision {name} {action.option_strings[0]}: help shows no default"
            )
    train = subparsers["train"]
    choices = {a.dest: a.choices for a in train._actions if a.choices}
    assert choices["optimizer"] == ("adam", "adamw", "sgd", "rmsprop")
    assert "cosine" in choices["lr_schedule"] and "mirrored" in choices["strategy"]
    assert "focal" in choices["loss"] and "smallcnn" in choices["backbone"]


def test_fixed_choice_flags_refuse_other_values(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--optimizer", "adamax"])
    assert "invalid choice: 'adamax'" in capsys.readouterr().err
    args = build_parser().parse_args(["train", "--freeze-backbone", "false", "--weights", "none"])
    assert args.freeze_backbone is False and args.weights is None


@pytest.mark.parametrize("line, native", [
    (b"I0000 00:00:1796117231.970120    5118 port.cc:153] oneDNN custom operations are on.", True),
    (b"E0000 00:00:1796117089.343864    4443 cuda_platform.cc:52] failed call to cuInit", True),
    (b"W0000 00:00:1796117089.3 12 tensorflow/core/x.cc:1] warn", True),
    (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
     True),
    (b"medivision predict: error: Model file not found: 'x.keras'", False),
    (b"Scanning images: 100%|##########| 180/180", False),
])
def test_native_log_filter(line, native):
    assert _quiet.is_native_log(line) is native


def test_commands_that_run_tensorflow_keep_its_log_lines_off_stderr(tmp_path):
    # A real TensorFlow command (export of a tiny model) in a fresh process,
    # where TensorFlow's C++ logging starts: stderr stays clean.
    import medivision_tf

    medivision_tf.build_medivision(2, backbone="smallcnn", weights=None, input_shape=(32, 32, 1),
                                   lstm_units=4, attention_units=4).save(tmp_path / "m.keras")
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "medivision_tf", "export", str(tmp_path / "m.keras"),
         str(tmp_path / "export" / "m")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SavedModel written to" in result.stdout
    assert not any(_quiet.is_native_log(line.encode()) for line in result.stderr.splitlines()), (
        result.stderr[-3000:]
    )
    assert "absl::InitializeLog" not in result.stderr
    assert "Traceback" not in result.stderr

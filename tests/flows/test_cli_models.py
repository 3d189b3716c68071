"""``prefect-videogen models`` and the request-field flags of ``generate``, as a user runs them."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from prefect_videogen.catalog import load_catalog
from prefect_videogen.cli import _parser, main, request_extras
from prefect_videogen.media import probe_video

README = Path(__file__).resolve().parents[2] / "README.md"

# A model added only by a catalog override file: the local renderer serves any catalog row, so this
# one renders for real (480x480 at its default tier) and declares every optional field and an option.
SQUARE_MODEL = {
    "provider_model_id": "square-card-v1",
    "description": "A square title card (test row).",
    "status": "unconfirmed",
    "source": "tests/flows/test_cli_models.py, 2026-11-30",
    "unconfirmed": ["price"],
    "durations": [1, 2],
    "aspect_ratios": ["1:1", "16:9"],
    "sizes": {"480p": {"1:1": "480x480", "16:9": "854x480"}, "720p": {"1:1": "720x720", "16:9": "1280x720"}},
    "default_resolution": "480p",
    "wire": {
        "fields": {
            "image": "image",
            "end_image": "last_frame",
            "reference_images": "refs",
            "negative_prompt": "negative",
            "seed": "seed",
            "generate_audio": "audio",
        },
        "max_reference_images": 2,
        "options": {"style": {"type": "string", "values": ["ink", "chalk"]}, "grain": {"type": "number", "max": 1}},
    },
    "price": {
        "unit": "usd",
        "per_second": {"480p": 0.0, "720p": 0.0},
        "source": "free (test row)",
        "as_of": "2026-11-30",
    },
}


@pytest.fixture
def square_catalog(tmp_path, monkeypatch):
    """PREFECT_VIDEOGEN_CATALOG naming an override file that adds ``local/square-card``."""
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"providers": {"local": {"models": {"square-card": SQUARE_MODEL}}}}))
    monkeypatch.setenv("PREFECT_VIDEOGEN_CATALOG", str(path))
    return path


def models_json(capsys, *args: str) -> dict:
    assert main(["models", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_every_catalog_model_with_stable_keys(capsys):
    document = models_json(capsys)
    catalog = load_catalog()
    expected = {(p, m) for p, entry in catalog.providers.items() for m in entry.models}
    assert {(r["provider"], r["model"]) for r in document["models"]} == expected
    assert document["catalog_as_of"] == catalog.as_of.isoformat()
    keys = {
        "provider", "model", "provider_model_id", "default", "status", "retired_on", "description", "durations",
        "aspect_ratios", "resolutions", "default_resolution", "features", "max_reference_images",
        "max_prompt_chars", "provider_options", "price", "source", "unconfirmed",
    }  # fmt: skip
    assert all(set(record) == keys for record in document["models"])
    by_key = {(r["provider"], r["model"]): r for r in document["models"]}
    # OpenAI's Sora rows carry their retirement date: retired, whatever the row's status says.
    assert by_key["openai", "sora-2"]["status"] == "retired"
    assert by_key["openai", "sora-2"]["retired_on"] == "2026-09-24"
    local = by_key["local", "title-card"]
    assert local["default"] is True and local["durations"] == {"min": 1, "max": 60}
    assert local["resolutions"]["high"] == {"16:9": "1920x1080", "9:16": "1080x1920"}
    assert "image" in local["features"]
    scenario = by_key["scenario", "sora-2"]
    assert scenario["provider_model_id"] == "model_open-ai-sora-2"
    assert scenario["price"]["unit"] == "creative_units" and scenario["price"]["as_of"] == "2026-11-22"


def test_scenario_and_apiframe_list_at_least_14_models_each_with_its_sources(capsys):
    records = [r for r in models_json(capsys)["models"] if r["provider"] in ("scenario", "apiframe")]
    assert len(records) >= 14
    for record in records:
        assert record["status"] in ("live", "unconfirmed", "retired") and record["source"], record["model"]
        assert record["price"]["source"] and record["price"]["as_of"], record["model"]
        assert record["status"] != "unconfirmed" or record["unconfirmed"], record["model"]


def test_an_override_file_adds_a_model_to_the_listing(square_catalog, capsys):
    [record] = [r for r in models_json(capsys, "--provider", "local")["models"] if r["model"] == "square-card"]
    assert record["model"] == "square-card" and record["provider_model_id"] == "square-card-v1"
    assert record["status"] == "unconfirmed" and record["unconfirmed"] == ["price"]
    assert record["features"] == [
        "image",
        "end_image",
        "reference_images",
        "negative_prompt",
        "seed",
        "generate_audio",
    ]
    assert record["max_reference_images"] == 2 and record["default_resolution"] == "480p"
    assert record["provider_options"]["style"]["values"] == ["ink", "chalk"]
    assert record["provider_options"]["grain"] == {
        "type": "number",
        "values": None,
        "min": None,
        "max": 1.0,
        "description": "",
    }

    assert main(["models", "--provider", "local"]) == 0
    table = capsys.readouterr().out
    assert max(len(line) for line in table.splitlines()) <= 100
    row = table[table.index("square-card") :]
    for text in ("unconfirmed", "square-card-v1", "1 2", "1:1 16:9", "480p* 480x480", "720p 720x720"):
        assert text in row, text
    for text in ("image end refs x2", "neg", "seed", "audio", "+style ink|chalk", "+grain ..1", "480p $0/s"):
        assert text in row, text
    assert "square-card: unconfirmed: price; source: tests/flows/test_cli_models.py" in table


def test_the_table_fits_100_columns_and_names_status_and_price(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    for provider in load_catalog().providers:
        assert re.search(rf"^{provider}\s*$", out, flags=re.M), provider
    assert "retired 2026-09-24" in out  # OpenAI's Sora
    assert "model_open-ai-sora-2" in out and re.search(r"creative\s+(\S.*\n\s+)?units", out)
    assert "standard 3/s" in out  # APIFrame sora-2-pro: 12 credits for 4 s ... 45 for 15 s
    assert "--json" in out and "PREFECT_VIDEOGEN_CATALOG" in out


def test_one_provider_only(capsys):
    document = models_json(capsys, "--provider", "apiframe")
    assert {r["provider"] for r in document["models"]} == {"apiframe"}
    assert main(["models", "--provider", "apiframe"]) == 0
    out = capsys.readouterr().out
    assert "apiframe" in out and "title-card" not in out and "scenario" not in out.split("features:")[0]


def test_an_unknown_provider_is_one_error_line_naming_the_known_ones(capsys):
    assert main(["models", "--provider", "sora"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: provider='sora' is not allowed")
    for known in load_catalog().providers:
        assert repr(known) in line


def test_a_broken_override_file_is_one_error_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"providers": {"local": {"models": {"x": {"provider_model_id": "x"}}}}}))
    monkeypatch.setenv("PREFECT_VIDEOGEN_CATALOG", str(path))
    assert main(["models"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: the catalog with PREFECT_VIDEOGEN_CATALOG=") and "durations" in line


def test_the_readme_models_commands_run(capsys):
    commands = re.findall(r"^(prefect-videogen models[^#\n]*)", README.read_text(), flags=re.M)
    assert commands, "the README shows how to list models"
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, command
        assert "sora-2" in capsys.readouterr().out


# -- generate: the request fields as flags -------------------------------------------------------------


def test_flags_become_the_request_fields():
    args = _parser().parse_args(
        [
            "generate",
            "a fox",
            "--end-image",
            "last.png",
            "--reference-image",
            "a.png",
            "--reference-image",
            "https://example.com/b.png",
            "--negative-prompt",
            "rain",
            "--seed",
            "7",
            "--no-audio",
            "--option",
            "style=ink",
            "--option",
            "grain=0.5",
            "--option",
            'label="5"',
            "--option",
            'camera={"fixed": true}',
        ]
    )
    assert args.resolution is None and args.aspect == "16:9"
    assert request_extras(args) == {
        "end_image": "last.png",
        "reference_images": ["a.png", "https://example.com/b.png"],
        "negative_prompt": "rain",
        "seed": 7,
        "generate_audio": False,
        "provider_options": {"style": "ink", "grain": 0.5, "label": "5", "camera": {"fixed": True}},
    }
    assert request_extras(_parser().parse_args(["generate", "a fox"])) == {}
    assert request_extras(_parser().parse_args(["generate", "a fox", "--audio"])) == {"generate_audio": True}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--option", "style"], "error: --option='style' is not allowed; allowed: NAME=VALUE"),
        (["--option", "a=1", "--option", "a=2"], "error: --option='a=2' is not allowed; allowed: each name once"),
        (["--seed", "-1"], "error: seed=-1: Input should be greater than or equal to 0"),
    ],
)
def test_bad_flags_are_one_error_line(flags, expected, tmp_path, capsys):
    assert main(["generate", "a fox", *flags, "--out", str(tmp_path / "videos")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(expected), line
    assert not (tmp_path / "videos").exists()


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--negative-prompt", "rain"], "negative_prompt='rain'"),
        (["--seed", "7"], "seed=7"),
        (["--audio"], "generate_audio=True"),
        (["--end-image", "{frame}"], "end_image='{frame}'"),
        (["--aspect", "1:1"], "aspect_ratio='1:1'"),
        (["--resolution", "4k"], "resolution='4k'"),
    ],
)
def test_a_field_the_model_lacks_is_refused_by_the_catalog_before_any_job(flags, field, tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.delenv("PREFECT_VIDEOGEN_ALLOWED_ROOTS", raising=False)
    frame = tmp_path / "last.png"  # a real image the policy lets through: the catalog is what refuses it
    Image.new("RGB", (1280, 720)).save(frame)
    flags = [flag.format(frame=frame) for flag in flags]
    field = field.format(frame=frame)
    jobs = tmp_path / "jobs"
    monkeypatch.setenv("PREFECT_VIDEOGEN_LOCAL_JOBS", str(jobs))
    assert main(["generate", "a fox", *flags, "--out", str(tmp_path / "videos")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {field} is not allowed for local model 'title-card'; allowed: "), line
    assert not (tmp_path / "videos").exists() and not jobs.exists()


def test_a_model_with_every_field_generates_with_the_flags(
    prefect_server, square_catalog, tmp_path, monkeypatch, capsys
):
    from PIL import Image

    # main() widens the allowed roots in this process's environment: restored after the test.
    monkeypatch.delenv("PREFECT_VIDEOGEN_ALLOWED_ROOTS", raising=False)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("first.png", "last.png", "ref.png"):
        Image.new("RGB", (480, 480), "navy").save(images / name)
    argv = [
        "generate",
        f"a heron in ink {tmp_path.name}",
        "--model",
        "square-card",
        "--duration",
        "1",
        "--aspect",
        "1:1",
        "--image",
        str(images / "first.png"),
        "--end-image",
        str(images / "last.png"),
        "--reference-image",
        str(images / "ref.png"),
        "--negative-prompt",
        "rain",
        "--seed",
        "42",
        "--audio",
        "--option",
        "style=ink",
        "--option",
        "grain=0.25",
        "--out",
        str(tmp_path / "videos"),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    video = next(line.split(None, 1)[1] for line in out.splitlines() if line.startswith("video:"))
    sidecar = next(line.split(None, 1)[1] for line in out.splitlines() if line.startswith("sidecar:"))
    probe = probe_video(video)
    assert (probe.width, probe.height, probe.duration_seconds) == (480, 480, 1.0)  # the model's default tier
    request = json.loads(Path(sidecar).read_text())["request"]
    assert request["model"] == "square-card" and request["resolution"] == "480p"
    assert request["end_image"] == str(images / "last.png")
    assert request["reference_images"] == [str(images / "ref.png")]
    assert (request["negative_prompt"], request["seed"], request["generate_audio"]) == ("rain", 42, True)
    assert request["provider_options"] == {"style": "ink", "grain": 0.25}

    # A value the model does not declare: the catalog names the option and what is allowed.
    argv[argv.index("style=ink")] = "style=oil"
    argv[-1] = str(tmp_path / "other")
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: provider_options.style='oil' is not allowed for local model 'square-card'")
    assert "'ink', 'chalk'" in line and not (tmp_path / "other").exists()


# -- batch: the same flags as every item's defaults, the new columns per row ---------------------------


def test_batch_flags_and_columns_reach_every_item(prefect_server, square_catalog, tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.delenv("PREFECT_VIDEOGEN_ALLOWED_ROOTS", raising=False)
    Image.new("RGB", (64, 64)).save(tmp_path / "ref.png")
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt,seed,option.style\na fox,3,\nan owl,,chalk\n")
    argv = [
        "batch",
        str(rows),
        "--model",
        "square-card",
        "--duration",
        "1",
        "--aspect",
        "1:1",
        "--out",
        str(tmp_path / "v"),
    ]
    defaults = ["--reference-image", "ref.png", "--negative-prompt", "rain", "--audio", "--seed", "9"]
    monkeypatch.chdir(tmp_path)

    # A default the model does not declare: refused for every row that takes it, before any run.
    assert main([*argv, *defaults, "--option", "style=oil"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "row 1 (item-" in line and "provider_options.style='oil' is not allowed" in line
    assert "row 2" not in line  # row 2 sets its own style
    # A bad cell: row, column, value and what is allowed.
    rows.write_text("prompt,generate_audio\na fox,perhaps\n")
    assert main([*argv, *defaults]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "row 1 (item-" in line and "generate_audio='perhaps' is not allowed; allowed: true or false" in line
    assert not (tmp_path / "v").exists()

    rows.write_text("prompt,seed,option.style\na fox,3,\nan owl,,chalk\n")
    assert main([*argv, *defaults, "--option", "style=ink", "--preview"]) == 0, capsys.readouterr().err
    assert ": 2 preview;" in capsys.readouterr().out

"""Every fenced Python block in README.md and docs/*.md runs as written.

The blocks of one page run in order in one fresh process (a block may use names an earlier
block of its page defined), under KERAS_BACKEND=torch, the project's default backend (the
snippets' `os.environ.setdefault` keeps it; the JAX path of the fine-tuning recipe is tested
on a tiny model in tests/videoswin/model/), in a working folder that holds what the README's set-up command leaves
behind: `converted/<SETUP>/`. A real conversion makes it (`--random-weights 0`, parity on
torch only), of a tiny config under the set-up config's file name, so that the snippets
meet the same file names, manifest and loaders at a fraction of Swin-B's cost; snippets
never depend on the model's size. A block whose first line is `# Needs: COMMAND` runs COMMAND
there first, as the page tells its reader to. The README's Hub snippets run against the
loopback stand-in Hub (HF_ENDPOINT), where that conversion is published as `ORG/NAME`.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.converter.support import write_config

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parents[1]
SETUP = "swin_base_patch244_window877_kinetics400_22k"      # README's set-up command
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
TOKEN = "hf_write_token"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def python_blocks(page):
    """[(line number, code)] of the ```python blocks of a Markdown page."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1))
            for match in FENCE.finditer(text)]


def needs(code):
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    return first[len("# Needs:"):].strip() if first.startswith("# Needs:") else None


PAGES_WITH_CODE = [page for page in PAGES if python_blocks(page)]

RUNNER = textwrap.dedent("""
    import sys, time
    namespace = {"__name__": "__main__"}
    for label, path in zip(sys.argv[1::2], sys.argv[2::2]):
        code = open(path, encoding="utf-8").read()
        start = time.perf_counter()
        exec(compile(code, label, "exec"), namespace)
        print(f"ran {label} in {time.perf_counter() - start:.1f}s", flush=True)
""")


def test_the_pages_hold_python_blocks():
    """The extraction finds what the pages hold (a broken pattern would pass everything)."""
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 3
    assert all(code.strip() for _, code in blocks)
    assert any("from_preset" in code for _, code in blocks)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder as the README's set-up command leaves it, and the stand-in Hub serving the
    same conversion as ORG/NAME."""
    from huggingface_hub import constants

    from converter.convert import convert
    from tests.videoswin_tools.hub_server import HubServer
    from videoswin_tools.publish import publish

    root = tmp_path_factory.mktemp("docs")
    work = root / "work"
    (work / "configs").mkdir(parents=True)
    config = write_config(work / "configs" / f"{SETUP}.py", embed_dim=16, depths=(1, 1, 1, 1),
                          num_heads=(1, 1, 1, 1), num_classes=400)
    for entry in (ROOT / "configs").iterdir():      # the repository's configs, as in a clone
        (work / "configs" / entry.name).symlink_to(entry)
    previous = os.getcwd()
    os.chdir(work)
    try:
        convert(config, random_weights=0, backends=["torch"], parity_clip=(2, 32, 32),
                parity_clips=1, quiet=True, output_dir=str(work / "converted" / SETUP))
    finally:
        os.chdir(previous)
    os.remove(config)
    xet = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = True
    try:
        with HubServer(root / "hub", tokens=[TOKEN], lifetime=1800) as hub:
            publish(work / "converted" / SETUP, "ORG/NAME", token=TOKEN, endpoint=hub.url,
                    record_links=False)
            yield work, hub, root
    finally:
        constants.HF_HUB_DISABLE_XET = xet


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, workdir):
    work, hub, root = workdir
    env = dict(os.environ, KERAS_BACKEND="torch")
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(root / "hf-home"), HF_TOKEN=TOKEN,
               HF_HUB_DISABLE_XET="1", TF_CPP_MIN_LOG_LEVEL="2")
    blocks = python_blocks(page)
    arguments = []
    for number, (line, code) in enumerate(blocks):
        command = needs(code)
        if command:
            done = subprocess.run(["bash", "-c", command], cwd=work, env=env, timeout=900,
                                  capture_output=True, text=True)
            assert done.returncode == 0, (f"{page.name}:{line}: `# Needs:` command failed\n"
                                          f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        path = root / f"{page.stem}-{number}.py"
        path.write_text(code, encoding="utf-8")
        arguments += [f"{page.name}:{line}", str(path)]
    done = subprocess.run([sys.executable, "-c", RUNNER, *arguments], cwd=work, env=env,
                          timeout=1200, capture_output=True, text=True)
    assert done.returncode == 0, f"{page.name}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert done.stdout.count("ran ") == len(blocks)
    print(done.stdout)

"""converter.config_reader: equal to mmengine on every real config, refuses what is not data."""

import importlib.metadata
import textwrap
from pathlib import Path

import pytest
from mmengine.config import Config

from converter.config_reader import UnsafeConfigError, read_config

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parents[2]
FIXTURES_0X = Path(__file__).parent / "fixtures" / "upstream_0x" / "configs" / "recognition"


def _wheel_swin():
    try:
        dist = importlib.metadata.distribution("mmaction2")
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = Path(dist.locate_file("mmaction/.mim/configs/recognition/swin/"))
    return folder if folder.is_dir() else None


WHEEL_SWIN = _wheel_swin()


def _configs(root):
    return sorted(p for p in root.rglob("*.py")
                  if "_base_" not in p.relative_to(root).parts and p.name != "__init__.py")


def _plain(value):
    """`value` with tuples as lists, so that both readers compare equal whatever they keep."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _mmengine(path):
    return _plain(Config.fromfile(str(path), import_custom_modules=False).to_dict())


def _write(folder, files):
    """Write {name: source} under `folder`; returns the path of the first file."""
    paths = []
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        paths.append(path)
    return paths[0]


# Oracle: the configs the converter reads, parsed by both readers.

@pytest.mark.parametrize("path", _configs(ROOT / "configs"), ids=lambda p: p.stem)
def test_our_configs_match_mmengine(path):
    assert _plain(read_config(path)) == _mmengine(path)


@pytest.mark.parametrize("path", _configs(FIXTURES_0X), ids=lambda p: p.stem)
def test_official_0x_configs_match_mmengine(path):
    assert _plain(read_config(path)) == _mmengine(path)


@pytest.mark.skipif(WHEEL_SWIN is None, reason="mmaction2 (with its .mim configs) not installed")
@pytest.mark.parametrize("name", sorted(p.name for p in WHEEL_SWIN.glob("*.py"))
                         if WHEEL_SWIN else [])
def test_mmaction2_swin_configs_match_mmengine(name):
    path = WHEEL_SWIN / name
    assert _plain(read_config(path)) == _mmengine(path)


def test_every_real_config_list_is_non_empty():
    assert len(_configs(ROOT / "configs")) >= 13
    assert len(_configs(FIXTURES_0X)) >= 4


# Accepted constructs, checked against mmengine where mmengine supports them.

BASE = """
    model = dict(type='R', backbone=dict(depth=2, heads=[3, 6]), head=dict(classes=400))
    pipeline = [dict(type='Decode'), dict(type='Crop', size=224)]
    mean = (1.0, 2.0)
"""


def test_data_constructs_match_mmengine(tmp_path):
    path = _write(tmp_path, {"child.py": """
        '''A docstring.'''
        _base_ = './base.py'
        model = dict(backbone=dict(depth=4), head=dict(_delete_=True, type='Linear'))
        extra = dict(**_base_.model.head, k=1)
        steps = [*_base_.pipeline, dict(type='Pack')]
        both = (*_base_.mean, 3.0)
        merged = {**extra, 'z': {{_base_.model.backbone}}, 'w': [{{_base_.mean}}]}
        name = 'swin' \\
            '-tiny'
        url = ('https://example.org/'
               + name + '.pth')
        tag = f'{name}_{4:03d}_{2.5:.1f}_{url!r:.5}'
        pct = '%s-%d-%(x)s' % {'x': 1} if False else '%s-%05.1f' % ('a', 2.25)
        a, (b, c) = 1, [2, 3]
        a += 10
        lst = [1]
        alias = lst
        lst += [2]
        copied = extra.copy()
        copied['k'] = 2
        cond = 'yes' if 'swin' in name and b < c <= 3 else 'no'
        picks = name[1:3], name[::-1], _base_['pipeline'][-1]['size'], -2 ** 2 // 3 % 5 / 2
        nums = {1, 2}, b'ab' * 2, not a, (0 or '' or 'x') and 5, 7 // 2, 2 ** 64
        work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
        __hidden = 1
        _kept = 2
    """, "base.py": BASE})
    got = read_config(path)
    assert _plain(got) == _mmengine(path)
    assert got["model"] == dict(type="R", backbone=dict(depth=4, heads=[3, 6]),
                                head=dict(type="Linear"))
    assert got["extra"] == dict(classes=400, k=1)
    assert got["steps"][-1] == dict(type="Pack") and len(got["steps"]) == 3
    assert got["both"] == (1.0, 2.0, 3.0)
    assert got["merged"]["z"] == dict(depth=2, heads=[3, 6]) and got["merged"]["w"] == [(1.0, 2.0)]
    assert got["name"] == "swin-tiny" and got["url"] == "https://example.org/swin-tiny.pth"
    assert got["tag"] == "swin-tiny_004_2.5_'http"
    assert got["pct"] == "a-002.2"
    assert (got["a"], got["b"], got["c"]) == (11, 2, 3)
    assert got["alias"] == [1, 2]  # `+=` on a list extends it in place, as Python does
    assert got["copied"] == dict(classes=400, k=2) and got["extra"]["k"] == 1
    assert got["work_dir"] == "./work_dirs/child"
    assert "__hidden" not in got and got["_kept"] == 2 and "_base_" not in got


def test_delete_replaces_and_is_dropped_only_where_the_base_has_the_key(tmp_path):
    path = _write(tmp_path, {"child.py": """
        _base_ = 'base.py'
        fresh = dict(p=1, _delete_=True)
        model = dict(backbone=dict(_delete_=True, type='Other'), head=fresh)
        kept = dict(m=fresh)
    """, "base.py": BASE})
    got = read_config(path)
    assert got["model"]["backbone"] == dict(type="Other")
    assert got["model"]["head"] == dict(p=1)
    assert got["fresh"] == dict(p=1, _delete_=True) == got["kept"]["m"]  # as mmengine keeps it
    assert _plain(got) == _mmengine(path)


def test_quoted_base_placeholder_is_the_value(tmp_path):
    # mmengine turns a quoted placeholder into a random string; the reader gives the value.
    path = _write(tmp_path, {"child.py": """
        _base_ = 'base.py'
        heads = '{{_base_.model.backbone.heads}}'
        head = dict(spec="{{ _base_.model.head }}")
    """, "base.py": BASE})
    got = read_config(path)
    assert got["heads"] == [3, 6] and got["head"] == dict(spec=dict(classes=400))


def test_later_bases_and_lists_replace(tmp_path):
    path = _write(tmp_path, {"child.py": """
        _base_ = ['models/m.py', 'data.py']
        pipeline = [dict(type='Only')]
    """, "models/m.py": "model = dict(a=1)\n", "data.py": BASE.replace("model", "other")})
    got = read_config(path)
    assert got["pipeline"] == [dict(type="Only")] and got["model"] == dict(a=1)
    assert _plain(got) == _mmengine(path)


# Refused: each names the file and line, and nothing in the file ran.

NEGATIVE = {
    "import": ({"main.py": """
        x = 1
        import os; os.system('touch MARKER')
    """}, "main.py", 2, "import"),
    "dunder import in a base": ({"main.py": """
        _base_ = ['ok.py', 'evil.py']
        y = 2
    """, "ok.py": "a = 1\n", "evil.py": """
        b = 1
        x = __import__('os').system('touch MARKER')
    """}, "evil.py", 2, "__import__"),
    "open": ({"main.py": """
        model = dict(
            secret=open('/etc/passwd').read())
    """}, "main.py", 2, "open("),
    "class walk": ({"main.py": "x = ().__class__.__bases__\n"}, "main.py", 1, "attribute"),
    "method call": ({"main.py": "x = 'a'.join(['b'])\n"}, "main.py", 1, "call"),
    "builtin name": ({"main.py": "x = 1\ny = print\n"}, "main.py", 2, "print"),
    "lambda": ({"main.py": "f = dict(key=lambda: 0)\n"}, "main.py", 1, "Lambda"),
    "comprehension": ({"main.py": "xs = [i for i in (1, 2)]\n"}, "main.py", 1, "ListComp"),
    "walrus": ({"main.py": "x = (y := 1)\n"}, "main.py", 1, "NamedExpr"),
    "starred assignment": ({"main.py": "a, *b = [1, 2, 3]\n"}, "main.py", 1, "starred"),
    "def": ({"main.py": "def f():\n    pass\n"}, "main.py", 1, "only assignments"),
    "if": ({"main.py": "x = 1\nif x:\n    y = 2\n"}, "main.py", 2, "only assignments"),
    "shift": ({"main.py": "x = 1 << 100000000\n"}, "main.py", 1, "LShift"),
    "read_base": ({"main.py": """
        from mmengine.config import read_base
        with read_base():
            from .base import *
    """}, "main.py", 2, "read_base"),
    "huge string": ({"main.py": "s = 'a' * 10**9\n"}, "main.py", 1, "at most"),
    "huge power": ({"main.py": "n = 2 ** 10**9\n"}, "main.py", 1, "exponent"),
    "huge number": ({"main.py": "n = 10 ** 64\nm = n ** 64\n"}, "main.py", 2, "number"),
    "huge width": ({"main.py": "s = f'{1:>999999999}'\n"}, "main.py", 1, "width"),
    "star width": ({"main.py": "s = '%*d' % (10**9, 1)\n"}, "main.py", 1, "width"),
    "shared parts": ({"main.py": "x = [0] * 1000\ny = [x] * 10000\n"}, "main.py", 2, "holds"),
    "holds itself": ({"main.py": "x = [1]\nx[0] = x\n"}, "main.py", 2, "nested"),
    "base holds itself": ({"main.py": "_base_ = 'b.py'\nx = 1\n_base_.a['k'] = _base_.a\n",
                           "b.py": "a = dict(k=1)\n"}, "main.py", 3, "nested"),
    "cycle": ({"main.py": "_base_ = 'a.py'\n", "a.py": "_base_ = ['b.py']\n",
               "b.py": "x = 1\n_base_ = './a.py'\n"}, "b.py", 2, "cycle"),
    "env placeholder": ({"main.py": "root = '{{$DATA_ROOT:/data}}'\n"}, "main.py", 1,
                        "environment"),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_refused(tmp_path, monkeypatch, case):
    files, bad, line, fragment = NEGATIVE[case]
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, files)
    with pytest.raises(UnsafeConfigError) as info:
        read_config(path)
    err = info.value
    assert (Path(err.path), err.line) == (tmp_path / bad, line)
    message = str(err)
    assert message.startswith(f"{tmp_path / bad}, line {line}: ") and "\n" not in message
    assert fragment in err.problem and message.endswith("--trust-config to run the file "
                                                        "through mmengine (only for files you "
                                                        "trust)")
    assert not (tmp_path / "MARKER").exists()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        read_config(tmp_path / "nope.py")
    assert info.value.filename == str(tmp_path / "nope.py")


def test_missing_base(tmp_path):
    path = _write(tmp_path, {"main.py": "x = 1\n_base_ = ['gone/base.py']\n"})
    with pytest.raises(FileNotFoundError) as info:
        read_config(path)
    assert info.value.filename == str(tmp_path / "gone" / "base.py")
    assert f"{path}, line 2" in str(info.value)


def test_syntax_error_in_base(tmp_path):
    path = _write(tmp_path, {"main.py": "_base_ = 'base.py'\n",
                             "base.py": "a = 1\nb = dict(c=\n"})
    with pytest.raises(SyntaxError) as info:
        read_config(path)
    assert (info.value.filename, info.value.lineno) == (str(tmp_path / "base.py"), 2)


def test_broken_configs_are_value_errors_not_unsafe(tmp_path):
    cases = {
        "bare_base_name.py": ("_base_ = 'base.py'\nx = model\n", "_base_.model"),
        "missing_key.py": ("_base_ = 'base.py'\nx = _base_.nothing\n", "_base_.nothing"),
        "bad_type.py": ("x = 1 + 'a'\n", "TypeError"),
        "duplicate.py": ("_base_ = ['base.py', 'base.py']\n", "duplicate"),
        "dict_over_list.py": ("_base_ = 'base.py'\npipeline = dict(a=1)\n", "_delete_=True"),
    }
    _write(tmp_path, {"base.py": BASE})
    for name, (text, fragment) in cases.items():
        path = _write(tmp_path, {name: text})
        with pytest.raises(ValueError) as info:
            read_config(path)
        assert not isinstance(info.value, UnsafeConfigError), name
        assert fragment in str(info.value), name
        with pytest.raises(Exception):  # mmengine refuses them too
            Config.fromfile(str(path), import_custom_modules=False)

"""`videoswin-publish`: upload a conversion output folder to the Hugging Face Hub.

The exact folder to upload is staged first (in a temporary folder, or `--stage-dir`):
every artifact the manifest lists, byte for byte (exports in subfolders included, such as
`<stem>_saved_model/`), `manifest.json`, the parity report, a label map, Keras's Hub layout
for the classifier (`config.json`, `metadata.json`, `model.weights.h5`) and for the backbone
(`backbone/`), and the model card `README.md` (see `videoswin/model/presets.py` for the
layout). Artifacts are staged as hard links (copies across filesystems); a symbolic link
anywhere on an artifact's path is refused, so nothing outside the folder is ever uploaded.

After a successful upload, what was published is recorded in the local `manifest.json`
under `hub` (repository, revision, commit, and every file's URL, size and sha256: see
`videoswin.core.manifest`), so that `videoswin-zoo` can link each file with its sha256. The
record is written atomically under the folder's conversion lock, and only when it changes:
publishing unchanged files again leaves the manifest byte for byte as it was. The uploaded
`manifest.json` is the local one without `hub` (a record of the upload cannot be part of
it), so the record itself never makes a new commit. Nothing else in the folder is written,
and nothing at all on a dry run or a failure (`record=False` / `--no-record`: nothing).

Uploading uses huggingface_hub (`create_repo(exist_ok=True)`, then `upload_folder`), which
asks the Hub for the oid of each file already there and leaves unchanged files out, so
re-publishing unchanged artifacts makes no commit. Stale artifacts of an earlier publish
(paths matching `MANAGED`) that the new folder lacks are deleted in the same commit.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import click

from videoswin.core import naming
from videoswin.core.backends import select_backend
from videoswin.core.manifest import Manifest, ManifestError

BACKBONE_DIR = "backbone"
LABEL_MAP = "label_map.json"
# Paths this tool owns in a repository: if a new publish lacks one, it is deleted.
MANAGED = ["*.keras", "*.weights.h5", "*.parity.json", "*.parity.md", "config.json",
           "metadata.json", f"{BACKBONE_DIR}/*", "manifest.json", LABEL_MAP,
           "*.onnx", "*.tflite", "*_saved_model/*", "*_openvino/*"]
EXAMPLE = ("videoswin-publish converted/swin_tiny_patch244_window877_kinetics400_1k "
           "--repo-id videoswin/swin_tiny_patch244_window877_kinetics400_1k")


class PublishError(Exception):
    """Publishing failed; the message is one paragraph for the user."""


@dataclass
class PublishResult:
    repo_id: str
    revision: str
    files: list                       # staged paths, relative, sorted
    dry_run: bool = False
    url: str | None = None
    commit: str | None = None         # head commit after publishing
    committed: bool = False           # whether this publish made a new commit
    staged_dir: str | None = None     # kept only with stage_dir=...
    tree: str = field(default="", repr=False)
    recorded: bool = False            # whether the local manifest's `hub` record changed
    links: dict = field(default_factory=dict, repr=False)   # path -> {url, size, sha256}


def read_manifest(output_dir):
    """The manifest of a conversion folder, with every artifact checked against it."""
    try:
        manifest = Manifest.read(output_dir)
        manifest.verify(output_dir)
    except ManifestError as err:
        raise PublishError(f"{err}; re-run videoswin-convert.") from None
    return manifest


def check_parity(manifest, allow_unverified=False):
    status = (manifest.get("parity") or {}).get("status")
    if status != "passed" and not allow_unverified:
        raise PublishError(f"parity status of {manifest['config']} is {status!r}, not 'passed': "
                           "only conversions proven equal to the original are published. Re-run "
                           "videoswin-convert with parity, or pass --allow-unverified to publish "
                           "anyway.")


def find_labels(output_dir, manifest, labels=None):
    """(class names, where they came from) for a classifier conversion."""
    from videoswin.core import labels as label_maps

    spec = manifest.spec
    dataset = spec.dataset
    if labels is None and (Path(output_dir) / "labels.txt").is_file():
        labels = Path(output_dir) / "labels.txt"
    try:
        if labels is not None:
            names, source = label_maps.read_label_file(labels), str(labels)
        elif dataset and label_maps.has_labels(dataset):
            names, source = label_maps.load_labels(dataset), f"the packaged {dataset} label map"
        else:
            raise PublishError(f"no label map for dataset {dataset!r} ships with videoswin; pass "
                               "--labels FILE (one class name per line in class-index order, or "
                               "a JSON list / index->name object).")
    except ValueError as err:
        raise PublishError(str(err)) from None
    if len(names) != spec.num_classes:
        raise PublishError(f"{source} has {len(names)} class names but {manifest.name} has "
                           f"{spec.num_classes} classes; pass the matching --labels FILE.")
    return names, source


def _link(src, dst):
    """Stage `src` at `dst` without copying bytes where the filesystem allows (a hard link;
    a copy across filesystems). A symbolic link is never followed: it could lead anywhere."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if os.path.islink(src):
        raise PublishError(f"{src} is a symbolic link; publishing takes regular files only.")
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copyfile(src, dst, follow_symlinks=False)


def _artifact_source(output_dir, name):
    """The path of artifact `name` (a relative path, `/`-separated) inside `output_dir`.

    Every component must be a plain name and a real directory or, last, a regular file:
    a symbolic link anywhere on the way could lead out of the folder, so it is refused."""
    try:
        parts = naming.check_relative_name(name, "artifact").split("/")
    except ValueError:
        raise PublishError(f"{naming.MANIFEST} of {output_dir} lists artifact {name!r}, which "
                           "is not a relative path inside the folder.") from None
    path = Path(output_dir)
    for i, part in enumerate(parts):
        path = path / part
        if os.path.islink(path):
            raise PublishError(f"{path} is a symbolic link; publishing takes regular files "
                               "only.")
        last = i == len(parts) - 1
        if not (path.is_file() if last else path.is_dir()):
            raise PublishError(f"{path} is missing or not a regular "
                               f"{'file' if last else 'folder'}; re-run videoswin-convert.")
    root = os.path.realpath(output_dir)
    if not os.path.realpath(path).startswith(root + os.sep):
        raise PublishError(f"artifact {name!r} resolves outside {output_dir}.")
    return path


def _keras_layout(archive, weights, folder, expected):
    """Keras's Hub layout in `folder`: config and metadata of `archive`, `weights` as weights.

    `weights` (the conversion's `.weights.h5`) holds the same values as the archive's own
    weights file; reusing its bytes lets the Hub and its download cache store them once.
    """
    from videoswin.model import keras_private

    try:
        config, files = keras_private.read_archive_config(archive)
    except ValueError as err:
        raise PublishError(f"{err}.") from None
    if config.get("registered_name") != f"videoswin>{expected}":
        raise PublishError(f"{archive} holds a {config.get('registered_name')!r} model, "
                           f"expected videoswin>{expected}.")
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    _link(weights, folder / "model.weights.h5")
    return config


def stage(output_dir, folder, repo_id, labels=None, allow_unverified=False):
    """Write into `folder` the exact tree to upload; return the manifest."""
    from videoswin_tools import model_card

    output_dir, folder = Path(output_dir), Path(folder)
    manifest = read_manifest(output_dir)
    check_parity(manifest, allow_unverified)
    stem, with_head = manifest.name, manifest.with_head
    for name in manifest["artifacts"]:
        _link(_artifact_source(output_dir, name), folder.joinpath(*name.split("/")))
    # The manifest as uploaded: the local one without its record of earlier publishes.
    (folder / naming.MANIFEST).write_text(uploaded_manifest(manifest).to_json(), "utf-8")
    main, kind = (stem, "VideoSwinClassifier") if with_head else \
        (f"{stem}_backbone", "VideoSwinBackbone")
    config = _keras_layout(output_dir / f"{main}.keras", output_dir / f"{main}.weights.h5",
                           folder, kind)
    if with_head:
        _keras_layout(output_dir / f"{stem}_backbone.keras",
                      output_dir / f"{stem}_backbone.weights.h5", folder / BACKBONE_DIR,
                      "VideoSwinBackbone")
        names, _ = find_labels(output_dir, manifest, labels)
        (folder / LABEL_MAP).write_text(
            json.dumps({str(i): n for i, n in enumerate(names)}, indent=2) + "\n", "utf-8")
    backbone_config = config["config"]["backbone"] if with_head else config
    preprocessing = bool(backbone_config["config"].get("include_preprocessing"))
    (folder / "README.md").write_text(
        model_card.render(manifest, repo_id, include_preprocessing=preprocessing), "utf-8")
    return manifest


def uploaded_manifest(manifest):
    """The manifest that goes to the Hub: the local one less `hub`, in canonical JSON (the
    bytes `videoswin-convert` wrote, for a manifest it wrote and nobody published)."""
    uploaded = Manifest({k: v for k, v in manifest.items() if k != "hub"})
    uploaded.source = manifest.source                  # already validated when read
    return uploaded


def links(folder, files, output_dir, manifest, endpoint, repo_id, commit):
    """{repository path: {url, size, sha256}} of the staged `files`, each URL pinned to
    `commit`. Files staged as hard links to the (verified) artifacts reuse their sha256."""
    from urllib.parse import quote

    from videoswin.core.manifest import describe

    def identity(path):
        stat = os.stat(path)
        return stat.st_dev, stat.st_ino, stat.st_size

    known = {identity(Path(output_dir).joinpath(*name.split("/"))): record["sha256"]
             for name, record in manifest["artifacts"].items()}
    out = {}
    for name in files:
        path = Path(folder).joinpath(*name.split("/"))
        record = describe(path, known.get(identity(path)))
        out[name] = {"url": f"{endpoint}/{repo_id}/resolve/{commit}/{quote(name)}", **record}
    return out


def hub_record(result):
    """The manifest's `hub` value for a publish `result`."""
    return {"repo_id": result.repo_id, "url": result.url, "revision": result.revision,
            "commit": result.commit, "files": result.links}


def record(output_dir, published, hub):
    """Write `hub` into `output_dir`'s manifest, under the folder's conversion lock and
    atomically; only if the conversion is still the one `published` (the manifest that was
    staged) and the record differs. Returns whether the file changed."""
    from converter.artifacts import Output, OutputError

    try:
        with Output(output_dir, force=True):
            current = Manifest.read(output_dir)
            if dict(uploaded_manifest(current)) != dict(uploaded_manifest(published)):
                raise PublishError(f"{output_dir} changed while it was being published (a new "
                                   "conversion or parity run); its manifest was left as it "
                                   "is: publish it again.")
            if current.get("hub") == hub:
                return False
            current["hub"] = hub
            current.write(output_dir)
            return True
    except (OutputError, ManifestError, OSError) as err:
        raise PublishError(f"could not record the publish in {output_dir}/{naming.MANIFEST} "
                           f"({err}).") from None


def tree(folder, title):
    """A printable tree of `folder` with file sizes."""
    rows = []

    def walk(directory, prefix):
        entries = sorted(Path(directory).iterdir(), key=lambda p: (p.is_file(), p.name))
        for i, path in enumerate(entries):
            last = i == len(entries) - 1
            label = f"{prefix}{'└── ' if last else '├── '}{path.name}"
            if path.is_dir() and not path.is_symlink():
                rows.append((label + "/", ""))
                walk(path, prefix + ("    " if last else "│   "))
            else:
                rows.append((label, _size(path.stat().st_size)))

    walk(folder, "")
    width = max(len(label) for label, _ in rows)
    return "\n".join([title] + [f"{label:<{width}}  {size:>8}".rstrip() for label, size in rows])


def _size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*")
                  if p.is_file())


def publish(output_dir, repo_id, *, private=False, revision=None, token=None, endpoint=None,
            dry_run=False, labels=None, allow_unverified=False, commit_message=None,
            stage_dir=None, log=None, record_links=True):
    """Publish a `videoswin-convert` output folder to the Hub repository `repo_id`.

    Token: `token`, else `HF_TOKEN` or the saved `hf auth login`. Endpoint: `endpoint`, else
    `HF_ENDPOINT`, else huggingface.co. `revision`: a branch (created from main if missing).
    `dry_run`: stage and describe, upload nothing. `stage_dir`: stage there (an empty or new
    folder) and keep it. `record_links`: after a successful upload, record the repository,
    commit and every file's URL, size and sha256 in the local manifest's `hub` (only when
    they changed). Raises `PublishError` with a one-paragraph message on failure; the local
    folder is not modified then, nor on a dry run. Returns a `PublishResult`.
    """
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    log = log or (lambda message: None)
    output_dir = Path(output_dir)
    revision = revision or "main"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise PublishError(f"--repo-id {repo_id!r} is not a valid repository id ({err}).") \
            from None
    if repo_id.count("/") != 1:
        raise PublishError(f"--repo-id {repo_id!r} must be ORG/NAME (Keras's hf:// loading "
                           "needs the namespace).")
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    if stage_dir is not None:
        stage_dir = Path(stage_dir)
        if stage_dir.resolve().is_relative_to(output_dir.resolve()):
            raise PublishError(f"--stage-dir {stage_dir} is inside {output_dir}; stage "
                               "elsewhere, the conversion folder is never written to.")
        if stage_dir.exists() and any(stage_dir.iterdir()):
            raise PublishError(f"--stage-dir {stage_dir} is not empty; give a new or empty "
                               "folder.")
        stage_dir.mkdir(parents=True, exist_ok=True)
        folder, cleanup = stage_dir, None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="videoswin-publish-")
        folder = Path(cleanup.name)
    try:
        log(f"Staging {output_dir} for {repo_id}")
        manifest = stage(output_dir, folder, repo_id, labels, allow_unverified)
        files = _files(folder)
        total = sum((folder / f).stat().st_size for f in files)
        listing = tree(folder, f"{repo_id} @ {revision}  ({len(files)} files, {_size(total)})")
        result = PublishResult(repo_id, revision, files, dry_run=dry_run, tree=listing,
                               url=f"{endpoint}/{repo_id}",
                               staged_dir=str(stage_dir) if stage_dir else None)
        if dry_run:
            return result
        token = token or huggingface_hub.get_token()
        if not token:
            raise PublishError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or "
                               "pass --token (it needs write access to "
                               f"{repo_id.split('/')[0]}). Nothing was uploaded.")
        result = _upload(result, folder, manifest, private, token, endpoint, commit_message,
                         log, output_dir)
        result.links = links(folder, files, output_dir, manifest, endpoint, repo_id,
                             result.commit)
        if record_links:
            try:
                result.recorded = record(output_dir, manifest, hub_record(result))
            except PublishError as err:
                raise PublishError(f"Published {repo_id} @ {revision} (commit "
                                   f"{result.commit}), but {err}") from None
        return result
    finally:
        if cleanup is not None:
            cleanup.cleanup()


def _upload(result, folder, manifest, private, token, endpoint, commit_message, log,
            output_dir):
    import huggingface_hub

    api = huggingface_hub.HfApi(endpoint=endpoint, token=token, library_name="videoswin")
    repo_id, revision = result.repo_id, result.revision
    step = "creating the repository"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision != "main":
            step = f"creating branch {revision!r}"
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        step = "reading the repository"
        info = api.repo_info(repo_id, revision=revision)
        if private and not info.private:
            log(f"note: {repo_id} already exists and is public; --private does not change it")
        step = f"uploading {len(result.files)} files"
        log(f"Uploading to {result.url} ({revision})")
        source = manifest.get("source_checkpoint") or {}
        parity = (manifest.get("parity") or {}).get("status")
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, revision=revision,
            commit_message=commit_message or f"Publish {manifest['config']}",
            commit_description=(f"Source checkpoint {source.get('name')} (sha256 "
                                f"{source.get('sha256')}); parity {parity}; "
                                + ", ".join(f"{k} {v}" for k, v in
                                            (manifest.get("versions") or {}).items())),
            delete_patterns=MANAGED)
    except Exception as err:  # noqa: BLE001  (classified below; unknown kinds re-raised)
        message = _describe_failure(err, endpoint, repo_id, step)
        if message is None:
            raise
        raise PublishError(f"Publishing {output_dir} to {repo_id} failed while {step}: "
                           f"{message} Nothing was committed; the local artifacts in "
                           f"{output_dir} are unchanged.") from err
    result.commit = commit.oid
    result.committed = commit.oid != info.sha
    return result


def _describe_failure(err, endpoint, repo_id, step):
    """One sentence on what went wrong, or None for errors that are not the Hub's or network's."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        response = getattr(err, "response", None)
        status = getattr(response, "status_code", None)
        server = getattr(err, "server_message", None) or ""
        said = f" ({server.strip()})" if server.strip() else ""
        if status == 401 or status == 403:
            return (f"the Hub at {endpoint} refused the token (HTTP {status}{said}). Check "
                    "HF_TOKEN, `hf auth login` or --token, and that the token may write to "
                    f"{repo_id.split('/')[0]}.")
        if status == 404:
            return (f"the Hub at {endpoint} answered HTTP 404{said}: the repository or branch "
                    "does not exist or the token cannot see it.")
        if status is not None and status >= 500:
            return (f"the Hub at {endpoint} answered HTTP {status}, a server error{said}. "
                    "Retry later; a re-run uploads only what is missing.")
        return f"the Hub at {endpoint} answered HTTP {status}{said}."
    if isinstance(err, OSError) or type(err).__module__.split(".")[0] in (
            "httpx", "httpx2", "httpcore", "requests", "urllib3"):
        return (f"could not reach the Hub at {endpoint} ({type(err).__name__}: {err}). Check "
                "the network connection and HF_ENDPOINT.")
    return None


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               epilog=f"Example:\n\n  {EXAMPLE} --dry-run")
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo-id", required=True, metavar="ORG/NAME",
              help="Hub model repository to create or update.")
@click.option("--private", is_flag=True,
              help="Create the repository private (an existing one keeps its visibility).")
@click.option("--revision", metavar="BRANCH", default=None,
              help="Branch to commit to; created from main if missing. Default: main.")
@click.option("--dry-run", is_flag=True,
              help="Stage the exact folder, print its tree, upload nothing.")
@click.option("--token", default=None,
              help="Hub token with write access. Default: HF_TOKEN, else the saved login "
                   "(`hf auth login`); prefer those to putting a token on the command line.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Class names (one per line in index order, or JSON) for the label map. "
                   "Default: OUTPUT_DIR/labels.txt, else the map videoswin ships for the "
                   "config's dataset.")
@click.option("--allow-unverified", is_flag=True,
              help="Publish even if the manifest's parity status is not 'passed'.")
@click.option("--commit-message", default=None, help="Default: 'Publish <config>'.")
@click.option("--stage-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Stage into this new or empty folder and keep it. Default: a temporary "
                   "folder, removed afterwards.")
@click.option("--no-record", is_flag=True,
              help="Do not record the published files (URLs, sizes, sha256) in OUTPUT_DIR's "
                   "manifest.json. Default: record them there, for videoswin-zoo.")
def cli(output_dir, repo_id, private, revision, dry_run, token, labels, allow_unverified,
        commit_message, stage_dir, no_record):
    """Publish a videoswin-convert OUTPUT_DIR to the Hugging Face Hub.

    The repository gets the classifier and backbone .weights.h5 and .keras files,
    manifest.json, the parity report, label_map.json, Keras's Hub layout
    (config.json, metadata.json, model.weights.h5; backbone/ for the backbone) and a model
    card README.md, so that `keras.saving.load_model("hf://ORG/NAME")` and
    `videoswin.VideoSwinClassifier.from_preset("hf://ORG/NAME")` load it. Unchanged
    artifacts make no new commit. The endpoint is HF_ENDPOINT when set. What was published
    (commit, each file's URL, size and sha256) is recorded under `hub` in OUTPUT_DIR's
    manifest.json, which is otherwise left as it is.
    """
    try:
        result = publish(output_dir, repo_id, private=private, revision=revision, token=token,
                         dry_run=dry_run, labels=labels, allow_unverified=allow_unverified,
                         commit_message=commit_message, stage_dir=stage_dir,
                         log=lambda message: click.echo(message, err=True),
                         record_links=not no_record)
    except PublishError as err:
        raise click.ClickException(str(err)) from None
    if dry_run:
        click.echo(result.tree)
        where = f"staged in {result.staged_dir}" if result.staged_dir else "staging removed"
        click.echo(f"Dry run: nothing uploaded to {result.url} ({where}).")
    elif result.committed:
        click.echo(f"Published {repo_id} @ {result.revision}: commit {result.commit} "
                   f"({result.url})")
    else:
        click.echo(f"{repo_id} @ {result.revision} is already up to date (commit "
                   f"{result.commit}); nothing uploaded.")
    if result.recorded:
        click.echo(f"Recorded {len(result.links)} published files in "
                   f"{output_dir / naming.MANIFEST}.")


def main(argv=None):
    """Console entry point `videoswin-publish`."""
    select_backend()
    return cli.main(args=argv, prog_name="videoswin-publish")


if __name__ == "__main__":
    main()

"""crab-7b sources: local files, Hub repo files (hf_hub_download), Hub repos and URLs; no network
(the Hub calls are monkeypatched, URLs are file:// URLs)."""

from __future__ import annotations

import pytest
import torch

from crab_core.checkpoint import hub
from crab_core.errors import CheckpointError


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    import huggingface_hub

    calls = []

    def download(repo_id, filename, **kw):
        calls.append(("file", repo_id, filename))
        if repo_id == "gated/llama":
            raise PermissionError("401 Client Error: Unauthorized (GatedRepoError)")
        path = tmp_path / "hub" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"w")
        return str(path)

    def snapshot(repo_id, allow_patterns=None, **kw):
        calls.append(("repo", repo_id, tuple(allow_patterns or ())))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    return calls


def test_released_files_by_repo_id_and_filename(fake_hub):
    assert hub.OFFICIAL_CRAB_FILES == (
        "ahsgdxhs/Crab/finetune_weights.bin",
        "ahsgdxhs/Crab/avs_finetune_weights.bin",
        "ahsgdxhs/Crab/avss_finetune_weights.bin",
    )
    for spec in hub.OFFICIAL_CRAB_FILES:
        assert hub.resolve(spec).name == spec.rsplit("/", 1)[1]
    assert hub.resolve("hf://owner/repo/sub/dir/x.bin").name == "x.bin"
    assert fake_hub[-1] == ("file", "owner/repo", "sub/dir/x.bin")
    assert [c[2] for c in fake_hub[:3]] == list(hub.OFFICIAL_FILES)


def test_repo_ids_and_local_paths(fake_hub, tmp_path):
    local = tmp_path / "finetune_weights.bin"
    local.write_bytes(b"x")
    assert hub.resolve(str(local)) == local and not fake_hub  # local: no Hub call
    assert hub.resolve("openai/clip-vit-large-patch14") == tmp_path
    assert fake_hub == [("repo", "openai/clip-vit-large-patch14", ("*.safetensors", "*.json", "*.model"))]
    for bad in ("nothing-here.bin", "./missing/file.bin", "/abs/missing.bin"):
        with pytest.raises(CheckpointError, match="not a local path"):
            hub.resolve(bad)


def test_gated_repo_says_hf_token(fake_hub):
    with pytest.raises(CheckpointError, match="HF_TOKEN") as exc:
        hub.resolve("gated/llama/model.safetensors")
    assert "\n" not in str(exc.value)


def test_beats_by_url_downloaded_once(tmp_path, monkeypatch):
    src = tmp_path / "BEATs_iter3_plus_AS2M.pt"
    torch.save({"model": {}}, src)
    monkeypatch.setenv("CRAB_CACHE", str(tmp_path / "cache"))
    url = src.as_uri()
    first = hub.resolve(url)
    assert first.parent == tmp_path / "cache" and first.name.endswith("-BEATs_iter3_plus_AS2M.pt")
    assert first.read_bytes() == src.read_bytes()
    with pytest.raises(CheckpointError, match="cannot download"):
        hub.resolve((tmp_path / "absent.pt").as_uri())
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded again"))
    assert hub.resolve(url) == first

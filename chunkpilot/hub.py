"""Pinning a hub model to the exact commit its branch or tag names right now.

Through ``huggingface_hub`` (``HfApi.model_info``), honouring ``HF_ENDPOINT`` (a mirror, or a
test server) and ``HF_TOKEN`` (gated and private models) from the environment at the time of
the call; the token is sent to the hub and written nowhere.
"""

from __future__ import annotations

import os
import re

from chunkpilot.errors import ConfigError

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def commit_of(repo_id: str, revision: str) -> str:
    """The commit sha ``revision`` (a branch, tag or sha) of hub model ``repo_id`` names now.

    ConfigError saying what to do when the hub cannot be reached or does not know the model.
    """
    if COMMIT_SHA.match(revision):
        return revision
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=os.environ.get("HF_TOKEN") or None)
    where = endpoint or "the Hugging Face Hub"
    try:
        sha = api.model_info(repo_id, revision=revision, timeout=30).sha
    except RevisionNotFoundError:
        raise ConfigError(f"--model {repo_id}@{revision}: {where} has no revision {revision!r} of {repo_id}") from None
    except GatedRepoError:
        raise ConfigError(f"--model {repo_id}: a gated model; accept its terms on the hub and export HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise ConfigError(f"--model {repo_id}: {where} has no such model (or it is private: export HF_TOKEN)") from None
    except Exception as exc:  # noqa: BLE001 - connection errors, timeouts, offline mode, a broken answer
        raise ConfigError(
            f"cannot reach {where} to pin --model {repo_id}@{revision} to a commit ({type(exc).__name__}: {exc}). "
            f"Pass a commit sha (--model {repo_id}@<40-hex sha>), or --allow-unpinned to run whatever "
            f"{revision!r} is when each chunk starts (recorded as unpinned)"
        ) from None
    if not isinstance(sha, str) or not COMMIT_SHA.match(sha):
        raise ConfigError(f"{where} answered no commit sha for {repo_id}@{revision} (got {sha!r})")
    return sha

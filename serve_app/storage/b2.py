"""The old worker's Backblaze B2 storage (B2_KEY_ID, B2_APP_KEY, B2_BUCKET_NAME, B2_PREFIX), through B2's S3 API.

The old worker uploaded with b2sdk and handed out `https://f005.backblazeb2.com/file/{bucket}/{prefix}/{id}.mp4`.
The same account answers B2's `b2_authorize_account` with its S3 endpoint and its download host, so the
service asks once at start (unless both are given) and then stores through boto3 like any S3 store, with
links of exactly that form.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel, SecretStr


class B2Account(BaseModel):
    s3_api_url: str
    download_url: str


def b2_account(key_id: str, app_key: str, api_url: str = "https://api.backblazeb2.com") -> B2Account:
    """Ask B2 where this key's S3 endpoint and download host are (one authorised GET)."""
    try:
        resp = httpx.get(f"{api_url.rstrip('/')}/b2api/v3/b2_authorize_account", auth=(key_id, app_key), timeout=30)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"could not reach B2 to look up the bucket's S3 endpoint ({exc}); set B2_S3_ENDPOINT and "
                           "B2_DOWNLOAD_URL to skip the lookup") from None
    if resp.status_code != 200:
        raise RuntimeError(f"B2 refused B2_KEY_ID / B2_APP_KEY (HTTP {resp.status_code}): {resp.text[:200]}")
    storage = resp.json()["apiInfo"]["storageApi"]
    return B2Account(s3_api_url=storage["s3ApiUrl"], download_url=storage["downloadUrl"])


def uses_b2(settings) -> bool:
    return bool(settings.b2_bucket_name and settings.b2_key_id and settings.b2_app_key)


def apply_b2(settings):
    """Settings with the old worker's B2 variables turned into this service's S3 storage (when all three are set):
    videos under B2_PREFIX with their old names, links on B2's download host, the service's own records beside
    them under `fastwan/`. Storage set explicitly (FASTWAN_STORAGE_URL) is left alone."""
    if not uses_b2(settings) or settings.storage_url != type(settings).model_fields["storage_url"].default:
        return settings
    s3, download = settings.b2_s3_endpoint, settings.b2_download_url
    if not (s3 and download):
        account = b2_account(settings.b2_key_id, settings.b2_app_key.get_secret_value(), settings.b2_api_url)
        s3, download = s3 or account.s3_api_url, download or account.download_url
    host = s3.split("://", 1)[-1].split("/", 1)[0]  # s3.us-west-004.backblazeb2.com: the region signs requests
    region = host.split(".")[1] if host.startswith("s3.") and host.count(".") >= 3 else settings.s3_region
    bucket, prefix = settings.b2_bucket_name, settings.b2_prefix.strip("/")
    return settings.model_copy(update=dict(
        storage_url=f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}", s3_endpoint_url=s3, s3_region=region,
        s3_access_key_id=SecretStr(settings.b2_key_id), s3_secret_access_key=settings.b2_app_key,
        legacy_object_names=True,
        public_video_base_url=settings.public_video_base_url or f"{download.rstrip('/')}/file/{bucket}"))

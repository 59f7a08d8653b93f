"""S3 artifact store that the tracking server keeps behind its own proxy.

Since MLflow 3.15 a server whose artifact store can presign URLs advertises
``multipart_downloads_enabled`` (and uploads) in ``/api/3.0/mlflow/server-info``.
Clients and the UI then download straight from the S3 endpoint the *server* uses,
``http://minio:9000``, which exists only inside the stack: every laptop download hangs
for a minute and fails. MLflow decides what to advertise with ``isinstance`` checks on
the repository, so this class offers the plain repository interface and delegates to
MLflow's S3 repository without inheriting its presign/multipart mixins. All artifact
bytes then travel through the tracking server, which is the only holder of S3 keys.

It also answers S3 errors that the request caused (a missing object, a name MinIO refuses
such as ``..\\x``) with 404/400 instead of MLflow's generic 500, and an unreachable
artifact store (MinIO stopped or restarting) with 503 and a message, and MinIO refusing the
server's own keys with a 500 that says who must fix what. Any other S3 failure becomes a
JSON 500 with a message: an exception that escapes MLflow's handlers makes the server drop
the client's connection without a response (tests/e2e/test_88_faults.py). Each of these
server-side failures, and an upload cut off before its end, is also logged.

Uploads stream from the request straight into an S3 multipart upload (MLflow's
``StreamUploadMixin``): no temporary copy of the body on the server's disk, memory bounded
by a few parts, and an upload the client abandons half-way is aborted, never stored short.

Its S3 client gives up connecting after a few seconds instead of botocore's 60: while
MinIO stops or restarts its old address can stay resolvable for a moment, and a connect
to it hung each request that hit that window for a full minute (longer than a laptop's
own timeout, so the laptop saw a hang instead of the 503).
"""

import asyncio
import contextlib
import functools
import logging
import os
import posixpath
import re
from collections.abc import AsyncIterable
from mimetypes import guess_type
from typing import BinaryIO

from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError
from mlflow.environment_variables import MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE, MLFLOW_S3_ENDPOINT_URL
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.store.artifact.artifact_repo import ArtifactRepository, StreamUploadMixin
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository
from starlette.requests import ClientDisconnect

from mlflow_stack.download_stream import growing_chunks
from mlflow_stack.upload_stream import STREAM_BLOCK_BYTES, BlockPipe, UploadAborted, blocks_of

# S3 error codes (HEAD requests carry only the HTTP status) that mean "bad request", not
# "server broken".
_REQUEST_ERRORS = {
    "NoSuchKey": (RESOURCE_DOES_NOT_EXIST, "No artifact at"),
    "404": (RESOURCE_DOES_NOT_EXIST, "No artifact at"),
    "XMinioInvalidResourceName": (INVALID_PARAMETER_VALUE, "Invalid artifact path"),
    "XMinioInvalidObjectName": (INVALID_PARAMETER_VALUE, "Invalid artifact path"),
    "XMinioInvalidObjectNamePrefixSlash": (INVALID_PARAMETER_VALUE, "Invalid artifact path"),
    "KeyTooLongError": (INVALID_PARAMETER_VALUE, "Artifact path too long"),
}
# S3 error codes that mean MinIO turned the server's own keys away: its service user was
# disabled or removed, its secret key changed, or its policy was detached.
_REFUSED_KEYS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}
_CODE_IN_MESSAGE = re.compile(r"An error occurred \((\w+)\)")

# MLflow's FastAPI artifact routes answer an MlflowException without logging it (its Flask
# handlers log every 5xx), so the operator would see only the access line's 500 or 503.
logger = logging.getLogger(__name__)


def _s3_error_code(error: BaseException) -> str | None:
    """The S3 error code behind an exception, following MLflow's and boto3's wrappers."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        response = getattr(error, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
        if match := _CODE_IN_MESSAGE.search(str(error)):
            return match.group(1)
        error = error.__cause__ or error.__context__
    return None


def _unreachable(error: BaseException) -> bool:
    """True if the S3 endpoint could not be reached or dropped the connection."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (BotoConnectionError, HTTPClientError)):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def _request_errors(path):
    try:
        yield
    except Exception as e:
        if isinstance(e, MlflowException) and e.error_code != "INTERNAL_ERROR":
            raise
        s3_code = _s3_error_code(e) or ""
        mapped = _REQUEST_ERRORS.get(s3_code)
        if mapped is not None:
            code, text = mapped
            raise MlflowException(f"{text} {path!r}", error_code=code) from e
        if s3_code in _REFUSED_KEYS:
            logger.error("artifact %r: MinIO refused the server's S3 keys (%s)", path, e)
            raise MlflowException(
                f"The artifact store refused the tracking server's S3 keys ({e}). An operator "
                "must make the server's keys and MinIO's service user for MLflow match again; "
                "with Docker Compose, `docker compose up -d` re-applies that user "
                "(docker compose logs minio-init).",
                error_code=INTERNAL_ERROR,
            ) from e
        if _unreachable(e):
            logger.warning("artifact %r: the artifact store is unreachable (%s)", path, e)
            raise MlflowException(
                f"The artifact store is unreachable ({e}); check the minio service "
                "(docker compose ps minio) and retry.",
                error_code=TEMPORARILY_UNAVAILABLE,
            ) from e
        if isinstance(e, MlflowException):
            raise
        debug = logger.isEnabledFor(logging.DEBUG)
        logger.error("artifact %r: artifact store error: %s: %s%s", path, type(e).__name__, e,
                     "" if debug else " (MLFLOW_LOGGING_LEVEL=DEBUG logs the traceback)",
                     exc_info=debug)
        raise MlflowException(
            f"Artifact store error for {path!r}: {type(e).__name__}: {e}", error_code=INTERNAL_ERROR
        ) from e


# MinIO is on the same Docker network: a connect that takes longer means it is down.
S3_CONNECT_TIMEOUT_SECONDS = 5
S3_READ_TIMEOUT_SECONDS = 60


@functools.lru_cache(maxsize=4)
def _s3_client(endpoint_url, addressing_style):
    """MLflow's S3 client (same signature and addressing), with a short connect timeout."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(
            signature_version="s3v4",
            # Over plain HTTP botocore would SHA-256 every byte to sign it (and MinIO would
            # hash it again to check): half of an upload's CPU. Requests stay signed;
            # bodies are still checked end to end by botocore's CRC32 checksums.
            s3={"addressing_style": addressing_style, "payload_signing_enabled": False},
            connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
            read_timeout=S3_READ_TIMEOUT_SECONDS,
        ),
    )


# s3transfer's parts an upload may hold in memory before they are sent (its default is 10).
# Measured with 1 GiB uploads from MLflow's client, alternating: with 10 the mlflow
# container grew by 162-174 MiB during an upload, with 4 by 113-114 MiB, at the same speed
# (224-284 against 225-282 MiB/s); with 2 by 80-87 MiB, but slower.
UPLOAD_PARTS_IN_MEMORY = 4


# s3transfer's part size is the pipe's block size, so each part is a block as it was put.
@functools.cache
def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=STREAM_BLOCK_BYTES, multipart_chunksize=STREAM_BLOCK_BYTES
    )
    # s3transfer's own setting, which boto3's TransferConfig does not take as an argument.
    config.max_in_memory_upload_chunks = UPLOAD_PARTS_IN_MEMORY
    return config


class ProxiedS3ArtifactRepository(ArtifactRepository, StreamUploadMixin):
    def __init__(self, artifact_uri, tracking_uri=None, registry_uri=None):
        super().__init__(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        self._s3 = S3ArtifactRepository(
            artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri
        )
        self._s3._get_s3_client = lambda: _s3_client(
            MLFLOW_S3_ENDPOINT_URL.get(), MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE.get()
        )

    def log_artifact(self, local_file, artifact_path=None):
        with _request_errors(posixpath.join(artifact_path or "", os.path.basename(local_file))):
            self._s3.log_artifact(local_file, artifact_path)

    def log_artifacts(self, local_dir, artifact_path=None):
        with _request_errors(artifact_path):
            self._s3.log_artifacts(local_dir, artifact_path)

    def list_artifacts(self, path=None):
        with _request_errors(path):
            return self._s3.list_artifacts(path)

    def delete_artifacts(self, artifact_path=None):
        with _request_errors(artifact_path):
            self._s3.delete_artifacts(artifact_path)

    def _stream_to_s3(self, stream: BinaryIO, artifact_file_name: str,
                      artifact_path: str | None) -> None:
        name = posixpath.basename(artifact_file_name)
        bucket, key = self._s3.parse_s3_compliant_uri(self.artifact_uri)
        key = posixpath.join(key, artifact_path or "", name)
        extra_args = {}
        guessed_type, guessed_encoding = guess_type(name)
        if guessed_type is not None:
            extra_args["ContentType"] = guessed_type
        if guessed_encoding is not None:
            extra_args["ContentEncoding"] = guessed_encoding
        extra_args.update(self._s3._bucket_owner_params)
        extra_args.update(self._s3.get_s3_file_upload_extra_args() or {})
        with _request_errors(posixpath.join(artifact_path or "", name)):
            self._s3._get_s3_client().upload_fileobj(
                Fileobj=stream, Bucket=bucket, Key=key, ExtraArgs=extra_args,
                Config=_transfer_config(),
            )

    def log_artifact_from_stream(self, stream, artifact_file_name, artifact_path=None):
        self._stream_to_s3(stream, artifact_file_name, artifact_path)

    async def log_artifact_from_async_stream(
        self, chunks: AsyncIterable[bytes], artifact_file_name: str,
        artifact_path: str | None = None,
    ) -> None:
        pipe = BlockPipe()

        def upload():
            try:
                self._stream_to_s3(pipe, artifact_file_name, artifact_path)
            finally:
                pipe.close()

        uploading = asyncio.ensure_future(asyncio.to_thread(upload))
        try:
            async with contextlib.aclosing(blocks_of(chunks, STREAM_BLOCK_BYTES)) as blocks:
                async for block in blocks:
                    await asyncio.to_thread(pipe.put, block)
            await asyncio.to_thread(pipe.finish)
        except UploadAborted:
            pass  # the upload failed first: its error is raised below
        except BaseException as e:
            # The client went away (or the server is stopping): make the upload fail, so
            # no object is completed from part of the body.
            logger.warning("artifact %r: the upload stopped before the end of its body (%s); "
                           "nothing was stored", posixpath.join(artifact_path or "",
                                                                artifact_file_name),
                           type(e).__name__)
            with contextlib.suppress(UploadAborted):
                await asyncio.to_thread(
                    pipe.finish, MlflowException(f"upload of {artifact_file_name!r} interrupted")
                )
            with contextlib.suppress(BaseException):
                await uploading
            if isinstance(e, ClientDisconnect):
                # Nobody is left to read an answer. Raised as it is, it reached uvicorn, which
                # logged a laptop's Ctrl-C as "Exception in ASGI application" and a
                # 100-line traceback; the warning above says all there is to say.
                raise MlflowException(f"upload of {artifact_file_name!r} interrupted: the "
                                      "client went away", error_code=BAD_REQUEST) from None
            raise e
        await uploading

    def open_stream(self, artifact_path: str):
        """(size, an iterator of the object's bytes) for the streaming download route
        (app.py), in download_stream's chunks. A failure half-way raises from the iterator,
        so the server drops the connection and the client, which was told the size, sees a
        short transfer."""
        bucket, key = self._s3.parse_s3_compliant_uri(self.artifact_uri)
        key = posixpath.join(key, artifact_path)
        with _request_errors(artifact_path):
            response = self._s3._get_s3_client().get_object(Bucket=bucket, Key=key)
        body = response["Body"]

        def chunks():
            try:
                with _request_errors(artifact_path):
                    yield from growing_chunks(body)
            finally:
                body.close()

        return response["ContentLength"], chunks()

    def _download_file(self, remote_file_path, local_path):
        with _request_errors(remote_file_path):
            self._s3._download_file(remote_file_path, local_path)

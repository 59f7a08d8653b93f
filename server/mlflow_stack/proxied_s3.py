"""S3 artifact store that the tracking server keeps behind its own proxy.

Since MLflow 3.15 a server whose artifact store can presign URLs advertises
``multipart_downloads_enabled`` (and uploads) in ``/api/3.0/mlflow/server-info``.
Clients and the UI then download straight from the S3 endpoint the *server* uses,
``http://minio:9000``, which exists only inside the stack: every laptop download hangs
for a minute and fails. MLflow decides what to advertise with ``isinstance`` checks on
the repository, so this class offers the plain repository interface and delegates to
MLflow's S3 repository without inheriting its presign/multipart mixins. All artifact
bytes then travel through the tracking server, which is the only holder of S3 keys.
"""

from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository


class ProxiedS3ArtifactRepository(ArtifactRepository):
    def __init__(self, artifact_uri, tracking_uri=None, registry_uri=None):
        super().__init__(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        self._s3 = S3ArtifactRepository(
            artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri
        )

    def log_artifact(self, local_file, artifact_path=None):
        self._s3.log_artifact(local_file, artifact_path)

    def log_artifacts(self, local_dir, artifact_path=None):
        self._s3.log_artifacts(local_dir, artifact_path)

    def list_artifacts(self, path=None):
        return self._s3.list_artifacts(path)

    def delete_artifacts(self, artifact_path=None):
        self._s3.delete_artifacts(artifact_path)

    def _download_file(self, remote_file_path, local_path):
        self._s3._download_file(remote_file_path, local_path)

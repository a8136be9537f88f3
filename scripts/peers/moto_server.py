"""Start a moto server whose S3 responses carry the XML root elements real S3 sends.

moto 5.2 serialises some S3 responses (ListParts and GetBucketVersioning among them)
with a root element named after the operation (`<ListPartsResponse>`), because the
botocore model it works from has no root name for them. Python clients ignore the root;
the Rust SDK checks it and rejects the response. This launcher sets the model's result
wrapper of those operations to the S3 names before handing over to moto.server.main().

Usage: python moto_server.py HOST PORT
"""
import sys

from moto.core import serialize

# Root element of each S3 response, as S3 itself names them.
S3_ROOTS = {
    "ListParts": "ListPartsResult",
    "GetBucketVersioning": "VersioningConfiguration",
    "ListObjects": "ListBucketResult",
    "ListObjectsV2": "ListBucketResult",
    "ListObjectVersions": "ListVersionsResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
    "CreateMultipartUpload": "InitiateMultipartUploadResult",
    "CompleteMultipartUpload": "CompleteMultipartUploadResult",
    "ListBuckets": "ListAllMyBucketsResult",
    "DeleteObjects": "DeleteResult",
    "GetBucketTagging": "Tagging",
    "GetObjectTagging": "Tagging",
    "GetBucketLifecycleConfiguration": "LifecycleConfiguration",
    "GetBucketAcl": "AccessControlPolicy",
    "GetObjectAcl": "AccessControlPolicy",
    "GetObjectAttributes": "GetObjectAttributesResponse",
}

_original = serialize.S3Serializer._serialized_result_to_response


def _with_s3_root(self, resp, result, shape, serialized_result):
    root = S3_ROOTS.get(self.operation_model.name)
    if root and shape is not None and "payload" not in shape.serialization:
        shape.serialization["resultWrapper"] = root
    return _original(self, resp, result, shape, serialized_result)


serialize.S3Serializer._serialized_result_to_response = _with_s3_root

if __name__ == "__main__":
    from moto import server

    host, port = sys.argv[1], sys.argv[2]
    server.main(["-H", host, "-p", port])

"""Unix seconds <-> google.protobuf.Timestamp."""

from google.protobuf import timestamp_pb2


def timestamp(unix_seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(unix_seconds * 1e9))
    return stamp

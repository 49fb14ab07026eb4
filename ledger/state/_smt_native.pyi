from collections.abc import Callable

def update(namespace: bytes, get: Callable[[bytes], bytes | None],
           changes: dict[bytes, bytes | None]) -> tuple[bytes, dict[bytes, bytes | None]]: ...

"""The messages the benchmark queues: about 3 KB each, shaped like real list traffic.

Three ``Received`` headers folded the way MTAs fold them, the usual originator and MIME
headers, and a plain-text body.  Each message differs from the others in its
``Message-ID``, ``Subject`` and queue ids, as real traffic does.
"""

from __future__ import annotations

#: The approximate size of one message, in bytes.
MESSAGE_SIZE = 3000
#: The metadata each message is queued with, as an LMTP runner would.
METADATA = {"listid": "bench.example.com", "original_size": MESSAGE_SIZE}

_LINE = b"The quick brown fox jumps over the lazy dog; lists deliver what they receive.\n"


def message_bytes(number: int) -> bytes:
    """The bytes of message *number*."""
    received = "".join(
        f"Received: from relay{hop}.example.net (relay{hop}.example.net [192.0.2.{hop + 1}])\n"
        f"\tby mx.example.com (Postfix) with ESMTPS id 4F{number:08X}{hop}\n"
        f"\tfor <bench@example.com>; Mon, 1 Jan 2024 00:00:{hop:02d} +0000\n"
        for hop in range(3)
    )
    headers = (
        f"{received}"
        "From: Anne Person <anne@example.com>\n"
        "To: bench@example.com\n"
        f"Subject: Benchmark message {number}\n"
        f"Message-ID: <bench-{number}@example.com>\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\n"
        "MIME-Version: 1.0\n"
        'Content-Type: text/plain; charset="us-ascii"\n'
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
    ).encode("ascii")
    lines = max(1, (MESSAGE_SIZE - len(headers)) // len(_LINE))
    return headers + _LINE * lines

"""How long post-processing a 24-megapixel JPEG takes, and whether the last PATCH waits for it.

Prints figures, asserts nothing: run `python3 scripts/bench_thumbnail.py` on a quiet machine.
1. analyse() in this process (sniff + decode with JPEG draft scaling + EXIF orientation + WebP thumbnails).
2. Against a real `tuskit server`: latency of the last (completing) PATCH of non-image uploads, of the
   24 MP JPEG itself, and of non-image uploads finishing while the server is busy making its thumbnails.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tuskit.server.media.postprocess import analyse
from tuskit.server.stores.files import FileStore

from support import TUS, start_server

TAIL = 64 * 1024  # the last PATCH carries this much


def photo_like_jpeg(width: int = 6000, height: int = 4000) -> bytes:
    """A 24 MP JPEG with gradients and noise (compresses like a photo, not like a flat colour)."""
    small = Image.linear_gradient("L").resize((width // 8, height // 8))
    noise = Image.effect_noise((width // 8, height // 8), 40)
    rgb = Image.merge("RGB", (small, noise, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    img = rgb.resize((width, height), Image.Resampling.BICUBIC)
    img = Image.blend(img, Image.effect_noise((width, height), 30).convert("RGB"), 0.25)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def last_patch_latency(endpoint: str, data: bytes) -> tuple[float, str]:
    """Upload `data` in two PATCHes; seconds the last one took, and the upload URL."""
    url = requests.post(endpoint, headers={**TUS, "Upload-Length": str(len(data))}, timeout=30).headers["Location"]
    octet = {**TUS, "Content-Type": "application/offset+octet-stream"}
    head = len(data) - TAIL
    assert requests.patch(url, data=data[:head], headers={**octet, "Upload-Offset": "0"}, timeout=60).ok
    start = time.perf_counter()
    done = requests.patch(url, data=data[head:], headers={**octet, "Upload-Offset": str(head)}, timeout=60)
    elapsed = time.perf_counter() - start
    assert done.status_code == 204, done.text
    return elapsed, url


def ms(values: list[float]) -> str:
    return f"median {1000 * statistics.median(values):.1f} ms, max {1000 * max(values):.1f} ms (n={len(values)})"


def main() -> None:
    jpeg = photo_like_jpeg()
    print(f"24 MP JPEG: 6000x4000, {len(jpeg) / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        store, upload_id = FileStore(Path(tmp) / "store"), "0" * 32
        store.create(upload_id)
        writer = store.writer(upload_id, 0)
        writer.write(jpeg)
        writer.close()
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            report = analyse(store, upload_id, (256,), 64_000_000)
            runs.append(time.perf_counter() - start)
        assert report["image"]["valid"] and (report["image"]["width"], report["image"]["height"]) == (4000, 6000)
        print(f"analyse (sniff, decode, orient, 256 px WebP) in process: {ms(runs)}")

        server = start_server(Path(tmp) / "server")
        try:
            other = bytes(range(256)) * (4 * 1024 * 1024 // 256)  # 4 MiB, not an image
            baseline = [last_patch_latency(server.url, other)[0] for _ in range(15)]
            print(f"last PATCH, non-image uploads, idle server:      {ms(baseline)}")

            elapsed, url = last_patch_latency(server.url, jpeg)
            state = requests.get(url + "/info", timeout=10).json()["state"]
            print(f"last PATCH of the 24 MP JPEG itself:             {1000 * elapsed:.1f} ms "
                  f"(state right after its 204: {state})")
            busy: list[float] = []
            while requests.get(url + "/info", timeout=10).json()["state"] != "processed":
                busy.append(last_patch_latency(server.url, other)[0])
            print(f"last PATCH while its thumbnail was being made:   {ms(busy) if busy else 'n/a (already done)'}")
            after = [last_patch_latency(server.url, other)[0] for _ in range(15)]
            print(f"last PATCH, non-image uploads, idle again:       {ms(after)}")

            # three JPEGs in a row keep the CPU thread busy longer: how do other uploads fare meanwhile?
            urls = []
            threads = [threading.Thread(target=lambda: urls.append(last_patch_latency(server.url, jpeg)[1]))
                       for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            during: list[float] = []
            start = time.perf_counter()
            while any(requests.get(u + "/info", timeout=10).json()["state"] != "processed" for u in urls):
                during.append(last_patch_latency(server.url, other)[0])
            print(f"3 JPEGs processed in {time.perf_counter() - start:.2f} s after upload; "
                  f"last PATCH meanwhile:  {ms(during) if during else 'n/a'}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()

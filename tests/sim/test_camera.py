"""camera: captures from the bench picture to a file or a zbuff; no camera means no photo."""

from __future__ import annotations

import io

from PIL import Image

# The vendor excamera library's sequence for a USB camera, inline.
PHOTO = """
sys.taskInit(function()
    local id = camera.init({id = camera.USB, sensor_width = 1280, sensor_height = 720,
                            usb_port = 1})
    log.info("init", id)
    camera.on(id, "scanned", function(cid, r) log.info("scanned", cid, r)
        sys.publish("CAPTURE_DONE", r) end)
    camera.stop(id)
    log.info("early", camera.capture(id, "/ram/a.jpg", 1))
    camera.start(id)
    log.info("capture", camera.capture(id, "/ram/test.jpg", 1))
    local ok, r = sys.waitUntil("CAPTURE_DONE", 5000)
    log.info("file", ok, r, io.fileSize("/ram/test.jpg"))
    local z = zbuff.create(64 * 1024)
    camera.capture(id, z, 1, 0, 0, 16, 8)
    local _, n = sys.waitUntil("CAPTURE_DONE", 5000)
    log.info("zbuff", n == z:used(), z:query(0, 2):toHex())
    camera.stop(id)
    camera.close(id)
    log.info("closed", camera.start(id))
end)
sys.run()
"""


def user(dev, tag):
    return [ln.split(" ", 1)[1] for ln in dev.lines() if ln.startswith(f"I/user.{tag} ")]


def test_capture_from_the_bench_to_file_and_zbuff(boot):
    dev = boot(PHOTO)
    scene = Image.new("RGB", (64, 48), (200, 30, 30))
    dev.camera.attach(scene)
    dev.run_for("3s")
    assert user(dev, "init") == ["32"]
    assert user(dev, "early") == ["false"]
    assert user(dev, "capture") == ["true"]
    ok, size, on_disk = user(dev, "file")[0].split()
    assert ok == "true" and size == on_disk and int(size) > 100
    photo = Image.open(io.BytesIO((dev.fs_root / "ram" / "test.jpg").read_bytes()))
    assert photo.size == (64, 48)
    r, g, b = photo.getpixel((32, 24))
    assert r > 170 and g < 70 and b < 70
    assert user(dev, "zbuff") == ["true FFD8 4"]  # a JPEG, cropped to 16x8
    assert dev.camera.captures[-1][1] == 16
    assert user(dev, "closed") == ["false"]


def test_no_camera_attached_gives_no_photo(boot):
    dev = boot(PHOTO)
    dev.run_for("12s")
    assert user(dev, "scanned")[0] == "32 false"
    assert user(dev, "file")[0].startswith("true false")
    assert not (dev.fs_root / "ram" / "test.jpg").exists()
    assert any("no camera on the bench" in r.text for r in dev.log if r.tag == "luatos-sim")

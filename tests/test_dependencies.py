import pandas
from packaging.version import Version


def test_rliable_imports_under_the_pinned_pandas():
    # rliable needs arch<8, and arch 7.x fails to import under pandas 3: keep this import working.
    import rliable.library
    import rliable.metrics  # noqa: F401

    assert Version(pandas.__version__) < Version("3")


def test_package_import_stays_light():
    import subprocess
    import sys

    code = "import sys, sb3_masked_attention; print(any(m.split('.')[0] in ('matplotlib', 'ray') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"

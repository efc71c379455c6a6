"""Development-only code: generated mail logs and sample reports.

Tests, benchmarks and scripts use these; the service never does, so this
package is not installed with extrusion (pyproject.toml installs `extrusion`
and its subpackages only). It is imported from the checkout, whose root the
test runner and each benchmark put on `sys.path`.
"""

"""The README's benchmark tables are generated from benchmarks/results (scripts/readme_tables.py)."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_render_replaces_block_with_results_file(tmp_path):
    mod = _module()
    (tmp_path / "r.md").write_text("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", encoding="utf-8")
    text = "intro\n<!-- table: r.md -->\nstale | 9 |\n<!-- /table -->\noutro\n"
    assert mod.render(text, tmp_path) == "intro\n<!-- table: r.md -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- /table -->\noutro\n"


def test_readme_tables_match_results_files():
    mod = _module()
    assert mod.main(["--check"]) == 0, "README.md tables differ from benchmarks/results: run scripts/readme_tables.py"


def test_headings_of_a_results_file_are_demoted(tmp_path):
    mod = _module()
    (tmp_path / "r.md").write_text("# Title\n\n## Notes\n\n- x\n### Deeper\n#hashtag\n", encoding="utf-8")
    out = mod.render("<!-- table: r.md -->\n<!-- /table -->\n", tmp_path)
    assert out == "<!-- table: r.md -->\n#### Notes\n\n- x\n##### Deeper\n#hashtag\n<!-- /table -->\n"

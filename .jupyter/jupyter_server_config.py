"""JupyterLab server settings for this checkout (``make lab`` points ``JUPYTER_CONFIG_PATH`` here).

The notebooks under ``notebooks/`` are saved without outputs, execution counts or widget state, the
same stripping the git filter does (nbstripout, see ``.gitattributes``), so that "Run all" and the
lab's autosave leave the tracked files byte-identical and ``git status`` clean. The open notebook
keeps showing its outputs until it is closed; papermill's executed copies (``runs/<profile>/notebooks/``)
and every other notebook are saved untouched.
"""
from pathlib import Path

NOTEBOOKS = (Path(__file__).resolve().parents[1] / "notebooks").resolve()
# nbstripout's defaults (its command line adds them; its API does not) and the kernel details the
# lab writes into language_info; the committed notebooks keep only language_info.name
STRIP_KEYS = ["metadata.signature", "metadata.widgets", "cell.metadata.collapsed", "cell.metadata.ExecuteTime",
              "cell.metadata.execution", "cell.metadata.heading_collapsed", "cell.metadata.hidden",
              "cell.metadata.scrolled", "cell.metadata.trusted", "metadata.language_info.codemirror_mode",
              "metadata.language_info.file_extension", "metadata.language_info.mimetype",
              "metadata.language_info.nbconvert_exporter", "metadata.language_info.pygments_lexer",
              "metadata.language_info.version"]


def strip_tracked_notebook(model, path, contents_manager, **kwargs):
    """Pre-save hook: strip a notebook of the checkout's ``notebooks/`` folder before it is written."""
    if model.get("type") != "notebook" or not hasattr(contents_manager, "_get_os_path"):
        return
    if Path(contents_manager._get_os_path(path)).resolve().parent != NOTEBOOKS:
        return
    import nbformat
    from nbstripout import strip_output

    notebook = nbformat.from_dict(model["content"])   # the server hands over plain dicts
    model["content"] = strip_output(notebook, keep_output=False, keep_count=False, keep_id=True,
                                    extra_keys=STRIP_KEYS)


c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)
c.ContentsManager.pre_save_hook = strip_tracked_notebook

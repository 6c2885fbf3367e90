"""The DataSource a run's data config names: training, evaluation and the study pre-checks open data here."""

from __future__ import annotations

from seglab.config.schema import DataConfig
from seglab.data.download import ensure_camvid
from seglab.data.sources import DataSource, open_source
from seglab.data.splits import parse_fractions, split_source
from seglab.errors import SeglabError


def open_data(cfg: DataConfig) -> DataSource:
    """Open ``cfg.root`` (downloading CamVid to the default place if unset); a dataset with problems (an
    image without its label) is refused, since training on the rest would hide them."""
    root = ensure_camvid(cfg.root)
    source = open_source(root, cfg.layout, cfg.remap, cfg.classes_file)
    source = split_source(source, parse_fractions(cfg.split) if cfg.split is not None else None, cfg.split_seed)
    if source.problems:
        more = f" (and {len(source.problems) - 1} more)" if len(source.problems) > 1 else ""
        raise SeglabError(f"{source.problems[0]}{more}; run `seglab data check {root}` for the full list")
    return source

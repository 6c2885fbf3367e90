"""What the commands share: option parsers (library functions say what is wrong with a value, the option
adds its own name: "Invalid value for '--size': 100x100: ... multiples of 32") and reusable options."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from seglab import sizes
from seglab.config import Duration


def duration(text: str) -> Duration:
    """90s, 10m, 1.5h or 00:30:00, positive: parsed here, once (a Duration is seconds that keep their text)."""
    seconds = Duration(text)  # its ValueError says what is wrong; typer names the option
    if seconds <= 0:
        raise ValueError(f"{text!r}: must be a positive duration")
    return seconds


def size_option(help: str, native: bool = False, name: str = "--size"):
    """The one size option: HxW checked against the size divisor, and ``native`` where allowed."""
    return typer.Option(name, parser=functools.partial(sizes.model_size, allow_native=native),
                        metavar="HxW|native" if native else "HxW", help=help)


# Options several commands share, each declared once here. Sizes are annotated str: typer reads the text, the
# parser returns (H, W). Where the default differs by command (a batch of 4 or 8), the command gives it.
Data = Annotated[str | None, typer.Option("--data", help="Dataset folder (default: the config's data.root, else "
                                                         "$SEGLAB_DATA or ~/.cache/seglab/camvid, downloaded).")]
RequiredData = Annotated[str, typer.Option("--data", help="Dataset folder.")]
RunData = Annotated[str | None, typer.Option("--data", help="Dataset folder (default: the one the run trained "
                                                            "on; for a study's report, its best run's).")]
JsonOut = Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")]
Threads = Annotated[int | None, typer.Option(min=1, help="torch threads (default: torch's).")]
Model = Annotated[str | None, typer.Option("--model", help="Model spec, e.g. unet:resnet18 (see seglab models).")]
Batch = Annotated[int | None, typer.Option("--batch", min=1, help="Batch size: images (or tiles of large images) per "
                                                           "forward pass.")]
TrainSize = Annotated[str | None, size_option("Training crop HxW, multiples of 32.")]
Calibration = Annotated[int, typer.Option("--calibration", min=1, help="INT8: training images to calibrate on.")]
Tta = Annotated[str | None, typer.Option(help="Test-time augmentation (default: the run's setting): none, flip, "
                                              "flip+scales (0.75x, 1x, 1.25x, each mirrored too), or scales of "
                                              "one's own such as flip+scales:0.75,1,1.5,2.")]


def with_choices(**param_keys: str) -> type[TyperCommand]:
    """A command class that appends each named option's allowed values (``tta="data.tta"``) to its help
    when help is shown. The values come from the dicts that implement them (losses, layouts, ...), whose
    modules are too slow to import on every start, so they are read only then."""

    class ChoicesHelp(TyperCommand):
        def format_help(self, ctx, formatter):
            from seglab.training.plan import choices

            for param in self.params:
                allowed = choices().get(param_keys.get(param.name or "", ""))
                if allowed and "One of:" not in (param.help or ""):
                    param.help = f"{param.help or ''} One of: {', '.join(allowed)}.".strip()
            return super().format_help(ctx, formatter)

    return ChoicesHelp


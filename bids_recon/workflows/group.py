"""Group level: gather every participant's metrics in output_dir into one table and one report.

The computation is in :mod:`bids_recon.group` (the metrics tables gathered, the encoding maps averaged); this
module only orders the steps and writes the group tables.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bids_recon.config import Config
from bids_recon.group import average_encoding_maps, collect_group_metrics, published_comparison
from bids_recon.io import write_tsv

LOGGER = logging.getLogger("bids_recon.group")


def run_group(config: Config) -> Path:
    """Write the group metrics table(s) and ``group.html``; return the report's path.

    Raises
    ------
    BadDataError
        A participant in scope is marked incomplete (``sub-<label>_INCOMPLETE.txt``: its run did not finish).
    """
    from bids_recon.bids.derivatives import refuse_incomplete, write_descriptions
    from bids_recon.naming import group_metrics_path, group_report_path

    output_dir = Path(config.execution.output_dir)
    refuse_incomplete(output_dir, config.execution.participant_label, "the group level")
    from bids_recon.reports.group import build_group_report

    table = collect_group_metrics(output_dir, config.execution.participant_label)
    for task, rows in table.groupby("task"):
        write_tsv(output_dir / group_metrics_path(str(task)), rows.reset_index(drop=True))
    from bids_recon.reports.group import encoding_group_sections

    groups = average_encoding_maps(output_dir, config.execution.participant_label)
    encoding = encoding_group_sections(output_dir, groups)
    if config.workflow.shared.method != "none":  # decoders shared across participants (--shared-space)
        from bids_recon.group.shared import run_shared_space
        from bids_recon.reports.group import shared_space_section

        path, shared = run_shared_space(config, output_dir, config.execution.participant_label)
        encoding = [shared_space_section(shared, path, config.workflow.shared), *encoding]
    report = build_group_report(output_dir, table, output_dir / group_report_path(),
                                published_comparison(output_dir, config.execution.participant_label),
                                extra_sections=encoding)
    write_descriptions(output_dir)  # the group maps' desc- labels too
    LOGGER.info("Group: %d participants; report %s", table["participant_id"].nunique(), report)
    return report

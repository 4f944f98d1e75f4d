"""Operations artefacts generated from the metric catalogue: alert rules, dashboard, docs."""

"""People's words: the one-line phrases of `include/templates/phrases.ja.yaml`, and the Japanese
names of what the runbook file calls by an identifier (an action, a step parameter).

The phrases are rendered like every template (`incident_ops.core.messages.jinja_environment`:
`StrictUndefined`, outside text escaped for Slack unless `Trusted` or `plain=True`); a string value
is folded to one line first, so nothing from outside can start a line of its own. Pure: no Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import yaml
from jinja2 import Template

from incident_ops.core.messages import TEMPLATES_DIR, Trusted, jinja_environment

__all__ = [
    "ACTION_LABELS",
    "CATALOGUE",
    "PARAM_LABELS",
    "param_label",
    "param_text",
    "params_text",
    "phrase",
    "phrases",
    "step_name",
]

CATALOGUE = TEMPLATES_DIR / "phrases.ja.yaml"

# What people call a remediation module (a step without its own `label` is named after its action).
ACTION_LABELS: dict[str, str] = {
    "ecs_scale_out": "スケールアウト",
    "ecs_scale_up": "スケールアップ",
    "ecs_rollback": "前のタスク定義へのロールバック",
    "ecs_force_deployment": "タスクの入れ替え",
    "github_rollback": "ロールバック",
    "rds_failover": "フェイルオーバー",
    "rds_restore_snapshot": "スナップショット復元",
    "set_feature_flag": "フィーチャーフラグの切り替え",
    "external_status_check": "ステータスページの確認",
    "isolate_service": "サービスの隔離",
    "restore_service": "隔離の解除",
    "aws_support_case": "AWS サポートへの問い合わせ",
}

# A step's parameters (the runbook's `params:` keys) as people read them; an unknown key shows as it is.
PARAM_LABELS: dict[str, str] = {
    "workflow": "ワークフロー",
    "version": "バージョン",
    "ref": "ブランチ",
    "timeout_seconds": "待ち時間の上限",
    "poll_seconds": "確認の間隔",
    "desired_count": "タスク数",
    "min_desired_count": "タスク数の下限",
    "max_desired_count": "タスク数の上限",
    "cpu": "CPU",
    "memory": "メモリ",
    "snapshot": "スナップショット",
    "restore_instance_class": "復元先のインスタンスクラス",
    "target_instance": "切り替え先のインスタンス",
    "flag": "フラグ",
    "value": "値",
    "method": "隔離の方法",
    "quarantine_security_group": "隔離用のセキュリティグループ",
    "target_group": "ターゲットグループ",
    "severity_codes": "問い合わせの緊急度",
    "language": "問い合わせの言語",
    "issue_type": "問い合わせの種類",
}

# Values that are words of a protocol (AWS, the runbook's enumerations), in people's words.
_VALUE_WORDS: dict[str, str] = {
    "latest": "最新",
    "latest-1": "1つ前（latest-1）",
    "on": "オン",
    "off": "オフ",
    "true": "オン",
    "false": "オフ",
    "deregister": "ロードバランサーから外す",
    "security_group": "隔離用のセキュリティグループに切り替える",
    "urgent": "緊急",
    "high": "高",
    "normal": "通常",
    "low": "低",
    "critical": "重大",
    "ja": "日本語",
    "en": "英語",
}


@lru_cache(maxsize=1)
def phrases() -> dict[str, str]:
    """The catalogue (key → Jinja source), read once."""
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{CATALOGUE}: expected a mapping of phrase keys to text")
    return data


@lru_cache(maxsize=256)
def _template(key: str) -> Template:
    try:
        source = phrases()[key]
    except KeyError:
        raise KeyError(f"no phrase {key!r} in {CATALOGUE.name}") from None
    return jinja_environment().from_string(source)


def _one_line(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, Trusted):
        return " ".join(value.split())
    return value


def phrase(key: str, /, *, plain: bool = False, **context: Any) -> str:
    """The phrase `key` with `context` (escaped for Slack unless `plain`; a missing value raises
    `jinja2.UndefinedError`)."""
    values = {name: _one_line(value) for name, value in context.items()}
    return _template(key).render(**values, __plain__=plain).strip()


def step_name(step: Any) -> str:
    """What people call a step: its `label`, else its action's name, else its id."""
    label = getattr(step, "label", None)
    if label:
        return str(label)
    return ACTION_LABELS.get(str(getattr(step, "action", "")), str(getattr(step, "id", "")))


def param_label(key: str) -> str:
    return PARAM_LABELS.get(key, key)


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "オン" if value else "オフ"
    return _VALUE_WORDS.get(str(value), str(value))


def param_text(key: str, value: Any) -> str:
    """One parameter's value as people read it (`timeout_seconds: 900` → `15分`)."""
    if key.endswith("_seconds") and isinstance(value, int | float) and not isinstance(value, bool):
        from incident_ops.core.messages import format_duration_ja

        seconds = int(value)
        return format_duration_ja(seconds // 60) if seconds >= 60 and seconds % 60 == 0 else f"{seconds}秒"
    if key == "cpu" and isinstance(value, int) and not isinstance(value, bool):
        return f"{value / 1024:g} vCPU"
    if key == "memory" and isinstance(value, int) and not isinstance(value, bool):
        return f"{value / 1024:g} GB"
    if key == "desired_count" or key.endswith("_desired_count"):
        return f"{value}"
    if isinstance(value, Mapping):
        return "、".join(f"{k}→{_word(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "、".join(_word(v) for v in value)
    return _word(value)


def params_text(params: Mapping[str, Any], *, plain: bool = False) -> str | None:
    """`設定: ワークフロー「rollback.yml」、…` for a step's parameters, or None when it has none."""
    if not params:
        return None
    settings = "、".join(phrase("decision.setting", plain=True, label=param_label(key), value=param_text(key, value))
                         for key, value in params.items())
    return phrase("decision.settings", plain=plain, settings=settings)

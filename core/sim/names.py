"""The catalogue of fantasy-sports event names and their property schemas (pure, fixed).

Names come from a curated head of core flows (lobby, team, contest, wallet, payment, KYC …) followed
by a combinatorial tail of ``<surface>_<action>`` names, so well over 300 realistic names exist. The
order is the popularity rank the simulator's Zipf law uses.

Each name's property schema is a pure function of the name (keyword rules plus a CRC-picked extra),
so a property keeps one type for a given event type across runs, seeds and processes: the lake never
sees a type conflict from simulator traffic.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

PropertyKind = Literal["long", "double", "string", "boolean", "nullable_string"]

CORE_NAMES: tuple[str, ...] = (
    "lobby_view",
    "match_card_click",
    "contest_list_view",
    "contest_join",
    "team_create",
    "team_edit",
    "team_preview",
    "player_select",
    "captain_select",
    "vice_captain_select",
    "team_save",
    "live_score_view",
    "leaderboard_view",
    "my_matches_view",
    "wallet_view",
    "wallet_add_cash_initiated",
    "wallet_add_cash_success",
    "wallet_add_cash_failed",
    "payment_initiated",
    "payment_success",
    "payment_failed",
    "payment_pending",
    "contest_join_success",
    "contest_join_failed",
    "contest_share",
    "private_contest_create",
    "private_contest_join",
    "app_open",
    "app_background",
    "login_success",
    "signup_complete",
    "otp_requested",
    "otp_verified",
    "kyc_started",
    "kyc_document_uploaded",
    "kyc_verified",
    "withdrawal_initiated",
    "withdrawal_success",
    "withdrawal_failed",
    "referral_invite_sent",
    "referral_reward_credited",
    "notification_received",
    "notification_open",
    "promo_code_applied",
    "coupon_redeemed",
    "player_stats_view",
    "scorecard_view",
    "commentary_view",
    "fantasy_points_view",
    "team_clone",
)

SURFACES: tuple[str, ...] = (
    "lobby_banner",
    "match_center",
    "contest_card",
    "contest_details",
    "team_builder",
    "player_card",
    "wallet_screen",
    "add_cash_sheet",
    "payment_gateway",
    "profile_screen",
    "leaderboard_row",
    "referral_screen",
    "rewards_shop",
    "offers_carousel",
    "my_matches_tab",
    "live_match_tab",
    "scorecard_tab",
    "kyc_screen",
    "withdraw_screen",
    "settings_screen",
    "onboarding_step",
    "search_bar",
    "chat_group",
    "notification_center",
    "help_center",
    "sport_switcher",
)

ACTIONS: tuple[str, ...] = (
    "view",
    "click",
    "open",
    "close",
    "scroll",
    "swipe",
    "share",
    "refresh",
    "long_press",
    "error",
    "load_time",
    "dismiss",
    "expand",
    "retry",
)


@dataclass(frozen=True)
class PropertySpec:
    name: str
    kind: PropertyKind


_POOL: dict[str, PropertyKind] = {
    "contest_id": "long",
    "match_id": "long",
    "team_id": "long",
    "position": "long",
    "spots_left": "long",
    "entry_count": "long",
    "duration_ms": "long",
    "retry_count": "long",
    "rank": "long",
    "amount": "double",
    "entry_fee": "double",
    "prize_pool": "double",
    "credits_used": "double",
    "discount": "double",
    "sport": "string",
    "screen": "string",
    "source": "string",
    "payment_method": "string",
    "contest_type": "string",
    "error_code": "string",
    "city": "string",
    "referrer": "nullable_string",
    "is_first_time": "boolean",
    "is_guaranteed": "boolean",
    "has_coupon": "boolean",
    "auto_join": "boolean",
}

_KEYWORD_PROPERTIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contest", ("contest_id", "entry_fee", "contest_type")),
    ("team", ("team_id", "match_id")),
    ("captain", ("team_id", "match_id")),
    ("player", ("match_id", "position")),
    ("match", ("match_id", "sport")),
    ("score", ("match_id", "sport")),
    ("leaderboard", ("contest_id", "rank")),
    ("wallet", ("amount",)),
    ("add_cash", ("amount", "payment_method", "has_coupon")),
    ("payment", ("amount", "payment_method")),
    ("withdraw", ("amount",)),
    ("failed", ("error_code", "retry_count")),
    ("error", ("error_code",)),
    ("load_time", ("duration_ms",)),
    ("referral", ("referrer",)),
    ("promo", ("discount",)),
    ("coupon", ("discount",)),
    ("lobby", ("sport", "screen")),
    ("notification", ("source",)),
    ("app_open", ("source", "is_first_time")),
    ("signup", ("city", "referrer")),
)

_EXTRAS: tuple[str, ...] = tuple(_POOL)


def catalogue() -> tuple[str, ...]:
    """Every available event name, most popular first (over 300; no duplicates)."""
    names = list(CORE_NAMES)
    seen = set(names)
    for action in ACTIONS:
        for surface in SURFACES:
            name = f"{surface}_{action}"
            if name not in seen:
                seen.add(name)
                names.append(name)
    return tuple(names)


def property_specs(event_name: str) -> tuple[PropertySpec, ...]:
    """The fixed property schema of ``event_name``: keyword-implied properties plus one or two extras."""
    chosen: list[str] = ["screen"] if "view" in event_name else []
    for keyword, props in _KEYWORD_PROPERTIES:
        if keyword in event_name:
            chosen.extend(props)
    digest = zlib.crc32(event_name.encode())
    for salt in range(1 + digest % 2):
        chosen.append(_EXTRAS[(digest >> (8 * salt + 3)) % len(_EXTRAS)])
    unique = list(dict.fromkeys(chosen))
    return tuple(PropertySpec(name, _POOL[name]) for name in unique)

"""How the report writes money, hours and shares, the same way in HTML and in the workbook.

USD is written with its symbol, every other currency with its ISO code after the amount, so a
reader never mistakes one dollar for another.
"""

from __future__ import annotations

_SYMBOL_BEFORE = {"USD": "$"}
MINUS = "\u2212"


def money(value: float, currency: str) -> str:
    """`$1,234.56`, `1,234.56 EUR`, negatives with a true minus sign: to the cent."""
    sign = MINUS if round(value, 2) < 0 else ""
    amount = f"{abs(value):,.2f}"
    symbol = _SYMBOL_BEFORE.get(currency)
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency}"


def money_compact(value: float, currency: str) -> str:
    """Axis labels: `$1.2k`, `$350`, `12k EUR`; whole units below a thousand."""
    magnitude = abs(value)
    if magnitude >= 1_000_000:
        text = f"{magnitude / 1_000_000:.3g}M"
    elif magnitude >= 1_000:
        text = f"{magnitude / 1_000:.3g}k"
    elif magnitude >= 10 or magnitude == 0:
        text = f"{magnitude:.0f}"
    else:
        text = f"{magnitude:.2g}"
    sign = MINUS if value < 0 else ""
    symbol = _SYMBOL_BEFORE.get(currency)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"


def hours(value: float) -> str:
    return f"{value:,.2f} h"


def percent(share: float) -> str:
    """A share in [0, 1] as a percentage with one decimal."""
    return f"{share * 100:.1f}%"


def xlsx_money_format(currency: str) -> str:
    """The Excel number format of an amount in `currency` (two decimals, thousands grouped)."""
    symbol = _SYMBOL_BEFORE.get(currency)
    if symbol:
        return f'"{symbol}"#,##0.00'
    return f'#,##0.00 "{currency}"'

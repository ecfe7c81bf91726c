"""Prices for the comparison: what one hour of an hourly option, or one seat of a seat option for
one month, cost in a given month and currency.

`pricing.book` builds the effective-dated price book (shipped list prices, Retail Prices API
refreshes, the user's discounts and overrides) and answers scalar look-ups; `pricing.retail`
refreshes list prices from the Azure Retail Prices API into the lake.
"""

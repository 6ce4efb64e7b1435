"""Streamlit building blocks shared by every page: the global filter bar
(``ui.filters``), cached database access (``ui.data``), chart + export reports
(``ui.report``) and KPI cards (``ui.cards``). Only this package and the page scripts
import Streamlit."""

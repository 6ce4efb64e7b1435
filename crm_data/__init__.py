"""The CRM data layer: canonical schema, engines, demo data, importers, data quality.

Plain Python (no Streamlit): usable from notebooks and scripts.
"""

from crm_data.engines import DEFAULT_URL, database_url, make_engine
from crm_data.schema import TABLE_NAMES, create_schema, metadata

__all__ = ["DEFAULT_URL", "TABLE_NAMES", "create_schema", "database_url", "make_engine", "metadata"]

"""Plain-Plotly chart building blocks: the theme and formatters (``charts.theme``), figure
builders (``charts.figures``) and file export (``charts.export``). No Streamlit here."""

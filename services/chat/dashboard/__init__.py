"""The dashboard the chat service serves: fleet, forecasts and anomalies, and a chat panel (issue 9)."""

from services.chat.dashboard.routes import handle_dashboard

__all__ = ["handle_dashboard"]

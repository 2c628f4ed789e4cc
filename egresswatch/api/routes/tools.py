"""GET /api/tools: one report card per local LLM tool seen."""

from fastapi import APIRouter

from egresswatch.api.deps import Components
from egresswatch.api.mapping import tool_card_out
from egresswatch.api.schemas import ToolsOut
from egresswatch.store.summaries import tool_summaries

router = APIRouter(tags=["tools"])


@router.get("/api/tools", response_model=ToolsOut)
def list_tools(web: Components) -> ToolsOut:
    """Report cards, busiest tool first: where each went, by category, from which executables."""
    return ToolsOut(tools=[tool_card_out(card) for card in tool_summaries(web.store.engine)])

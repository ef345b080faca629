"""crossfed's command line: a thin layer over simulations, clients, federation and crypto."""

__all__: list[str] = []

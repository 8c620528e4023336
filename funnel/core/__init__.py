"""Core types shared by every stage: errors, schemas, id maps, the backend URL registry."""

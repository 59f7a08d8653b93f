# Shortcuts for operators; each target is one documented command.
.PHONY: up down logs ps credentials test unit

up:
	docker compose up -d --build

down:
	docker compose down

logs:
	docker compose logs -f --tail=100

ps:
	docker compose ps

credentials:
	scripts/credentials

test:
	scripts/test

unit:
	scripts/test tests/unit

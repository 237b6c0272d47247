"""SQLAlchemy 1.4's ORM (Debian 12: 1.4.46, pure Python: no C extensions)
on the URL given: creates a table from a model, adds a row, queries it back.

Environment: SQLALCHEMY_URL, e.g. mysql+pymysql://USER:PASSWORD@HOST:PORT/DB
(postgresql+pg8000:// needs pg8000 1.16.6 or newer; Debian 12 has 1.10.6).
Prints, on its last line:
{"inserted": ..., "selected": ..., "dialect": ..., "cext": bool, "driver": ...}
"""
import json
import os
import secrets

import sqlalchemy
from sqlalchemy import Column, Integer, String, create_engine, select
from sqlalchemy.orm import Session, declarative_base

try:
    from sqlalchemy.cimmutabledict import immutabledict  # noqa: F401 (a C extension)
    cext = True
except ImportError:
    cext = False

Base = declarative_base()


class Note(Base):
    __tablename__ = "sqlalchemy_roundtrip"
    id = Column(Integer, primary_key=True)
    text = Column(String(100), nullable=False)


engine = create_engine(os.environ["SQLALCHEMY_URL"], future=True)
Base.metadata.create_all(engine)
value = secrets.token_hex(8)
with Session(engine) as session:
    note = Note(text=value)
    session.add(note)
    session.commit()
    note_id = note.id
with Session(engine) as session:
    selected = session.execute(select(Note.text).where(Note.id == note_id)).scalar_one()
engine.dispose()
print(json.dumps({"inserted": value, "selected": selected, "dialect": engine.dialect.name + "+" + engine.dialect.driver,
                  "cext": cext, "driver": "SQLAlchemy " + sqlalchemy.__version__}))

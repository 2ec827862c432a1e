"""A small Flask site for the integration tests: counters, flash across a redirect,
Flask-Login login/logout, a Flask-WTF form, and coatcheck's own CSRF protection."""

from __future__ import annotations

from typing import Any

from flask import (
    Flask,
    flash,
    get_flashed_messages,
    jsonify,
    redirect,
    render_template_string,
    request,
    session,
)
from flask.typing import ResponseReturnValue

from coatcheck.flask import Session, current_session


def make_app(**config: Any) -> Flask:
    """A Flask app with coatcheck sessions; `config` goes into app.config first."""
    app = Flask(__name__)
    app.config.update(config)
    Session(app)

    @app.get("/incr")
    def incr() -> ResponseReturnValue:
        session["n"] = session.get("n", 0) + 1
        return jsonify(n=session["n"])

    @app.get("/read")
    def read() -> ResponseReturnValue:
        return jsonify(n=session.get("n"), new=session.new)

    @app.get("/plain")
    def plain() -> ResponseReturnValue:
        return "plain"

    @app.get("/save")
    def save() -> ResponseReturnValue:
        flash("Saved!", "success")
        return redirect("/messages")

    @app.get("/messages")
    def messages() -> ResponseReturnValue:
        return jsonify(get_flashed_messages(with_categories=True))

    @app.get("/remember")
    def remember() -> ResponseReturnValue:
        session.permanent = request.args.get("on", "1") == "1"
        session["remembered"] = True
        return "ok"

    @app.get("/permanent-again")
    def permanent_again() -> ResponseReturnValue:
        session.permanent = True  # the common before_request idiom: no change, no cookie
        return jsonify(n=session.get("n"))

    @app.get("/force")
    def force() -> ResponseReturnValue:
        session.modified = True  # Flask's "save it anyway"
        return "ok"

    @app.get("/id")
    def session_id() -> ResponseReturnValue:
        return jsonify(user=current_session().user_id)

    return app


def add_flask_login(app: Flask) -> None:
    """Flask-Login with one user store; /login?user=ID, /logout, /me."""
    from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user

    class User(UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    manager = LoginManager(app)

    @manager.user_loader
    def load(user_id: str) -> User | None:
        return User(user_id) if user_id in ("alice", "bob") else None

    @app.get("/login")
    def login() -> ResponseReturnValue:
        user_id = request.args["user"]
        login_user(User(user_id), remember=request.args.get("remember") == "1")
        flash(f"Welcome {user_id}")
        return redirect("/me")

    @app.get("/logout")
    def logout() -> ResponseReturnValue:
        logout_user()
        flash("Bye")
        return redirect("/me")

    @app.get("/me")
    def me() -> ResponseReturnValue:
        name = current_user.id if current_user.is_authenticated else None
        return jsonify(user=name, messages=get_flashed_messages())

    @app.get("/private")
    @login_required
    def private() -> ResponseReturnValue:
        return jsonify(secret="only for " + current_user.id)


def add_wtf_form(app: Flask) -> None:
    """A Flask-WTF form protected by flask_wtf.csrf.CSRFProtect."""
    from flask_wtf import FlaskForm
    from flask_wtf.csrf import CSRFProtect
    from wtforms import StringField
    from wtforms.validators import DataRequired

    CSRFProtect(app)

    class NameForm(FlaskForm):
        name = StringField("name", validators=[DataRequired()])

    @app.route("/form", methods=["GET", "POST"])
    def form() -> ResponseReturnValue:
        form = NameForm()
        if form.validate_on_submit():
            session["name"] = form.name.data
            return jsonify(saved=form.name.data)
        if request.method == "POST":
            return jsonify(errors=form.errors), 400
        return render_template_string(
            '<form method="post">{{ form.csrf_token }}{{ form.name }}</form>', form=form
        )


def add_coatcheck_csrf(app: Flask, **options: Any) -> None:
    """coatcheck's own CSRF protection (coatcheck.flask.CSRFProtect) and a few endpoints."""
    from coatcheck.flask import CSRFProtect, csrf_exempt

    CSRFProtect(app, **options)

    @app.get("/page")
    def page() -> ResponseReturnValue:
        return render_template_string('<form method="post" action="/transfer">{{ csrf_input() }}</form>')

    @app.get("/token")
    def token() -> ResponseReturnValue:
        return render_template_string("{{ csrf_token() }}")

    @app.route("/transfer", methods=["POST", "PUT", "PATCH", "DELETE", "PURGE"])
    def transfer() -> ResponseReturnValue:
        session["transfers"] = session.get("transfers", 0) + 1
        return jsonify(transfers=session["transfers"])

    @app.post("/hook")
    @csrf_exempt
    def hook() -> ResponseReturnValue:
        return jsonify(hooked=True)

    @app.post("/sign-in")
    def sign_in() -> ResponseReturnValue:
        current_session().login(request.args.get("user", "alice"))
        return jsonify(ok=True)

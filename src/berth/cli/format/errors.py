"""The template error type, alone so the CLI's error handler can name it without importing the evaluator."""


class TemplateError(ValueError):
    pass


class TemplateSyntaxError(TemplateError):
    """The template could not be parsed (docker: "failed to parse template")."""
